//! Request bodies that can go out a second time.
//!
//! A pooled connection the server has closed is sometimes only found dead once a request went
//! out on it; the request then goes again on a fresh connection. The body hyper reads is a
//! [`RecordingBody`]: it keeps a copy of the first [`MAX_REPLAY_BYTES`] it passes on and holds
//! the guest's body where a [`Recorder`] can take back what hyper has not read yet, so a replay
//! sends what was recorded followed by the rest. A bigger body (or one that failed) is not
//! replayed.

use bytes::Bytes;
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, SizeHint};
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use wasmtime_wasi_http::{Error, WasiBody};

/// The most of a request body kept so that the request can be sent again.
pub const MAX_REPLAY_BYTES: usize = 64 * 1024;

/// One frame of a request body, as recorded.
enum Recorded {
    Data(Bytes),
    Trailers(HeaderMap),
}

impl Recorded {
    fn of(frame: &Frame<Bytes>) -> Option<Self> {
        frame
            .data_ref()
            .map(|data| Self::Data(data.clone()))
            .or_else(|| frame.trailers_ref().cloned().map(Self::Trailers))
    }

    fn into_frame(self) -> Frame<Bytes> {
        match self {
            Self::Data(data) => Frame::data(data),
            Self::Trailers(trailers) => Frame::trailers(trailers),
        }
    }
}

/// What a [`RecordingBody`] and its [`Recorder`] share.
struct Recording {
    /// The guest's body, until a replay takes what is left of it.
    body: Option<WasiBody>,
    /// The frames passed on so far.
    frames: Vec<Recorded>,
    /// The data bytes among them.
    bytes: usize,
    /// The body was too big to keep, failed, or was replayed already: it cannot go again.
    lost: bool,
    /// The guest's body has ended (hyper has had all of it).
    ended: bool,
}

impl Recording {
    fn keep(&mut self, frame: &Frame<Bytes>) {
        if self.lost {
            return;
        }
        if frame.is_trailers() {
            self.ended = true;
        }
        let size = frame.data_ref().map_or(0, Bytes::len);
        match Recorded::of(frame) {
            Some(recorded) if self.bytes + size <= MAX_REPLAY_BYTES => {
                self.bytes += size;
                self.frames.push(recorded);
            }
            // Too big, or a frame kind there is no way to copy.
            _ => self.forget(),
        }
    }

    fn forget(&mut self) {
        self.lost = true;
        self.frames = Vec::new();
        self.bytes = 0;
    }
}

fn lock(recording: &Mutex<Recording>) -> MutexGuard<'_, Recording> {
    recording.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A request body as hyper sends it: the guest's body, with a copy of what passed kept for a
/// replay (see the module documentation).
pub struct RecordingBody {
    recording: Arc<Mutex<Recording>>,
}

/// The other end of a [`RecordingBody`]: whether the body has ended, and its replay.
#[derive(Clone)]
pub struct Recorder {
    recording: Arc<Mutex<Recording>>,
}

impl RecordingBody {
    /// Wraps the guest's `body`.
    pub fn new(body: WasiBody) -> (Self, Recorder) {
        let ended = body.is_end_stream();
        let recording = Arc::new(Mutex::new(Recording {
            body: Some(body),
            frames: Vec::new(),
            bytes: 0,
            lost: false,
            ended,
        }));
        (
            Self {
                recording: Arc::clone(&recording),
            },
            Recorder { recording },
        )
    }
}

impl Body for RecordingBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let mut recording = lock(&self.recording);
        let Some(body) = recording.body.as_mut() else {
            // A replay took the rest: this attempt is over anyway.
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(body).poll_frame(cx));
        match &frame {
            None => recording.ended = true,
            Some(Ok(frame)) => recording.keep(frame),
            Some(Err(_)) => recording.forget(),
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        let mut recording = lock(&self.recording);
        let end = recording.body.as_ref().is_none_or(Body::is_end_stream);
        if end {
            // hyper reads no further once a body says it ended.
            recording.ended = true;
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        lock(&self.recording)
            .body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Body::size_hint)
    }
}

impl Recorder {
    /// Whether hyper has had the whole body.
    pub fn ended(&self) -> bool {
        lock(&self.recording).ended
    }

    /// No replay will be needed (a response came): drops what was kept.
    pub fn done(&self) {
        lock(&self.recording).forget();
    }

    /// The body again from its start, once: what was recorded, then what the guest has not
    /// yet handed over. `None` when it cannot be replayed.
    pub fn replay(&self) -> Option<WasiBody> {
        let mut recording = lock(&self.recording);
        if recording.lost {
            return None;
        }
        let frames: VecDeque<Recorded> = std::mem::take(&mut recording.frames).into();
        let bytes = recording.bytes;
        let rest = if recording.ended {
            None
        } else {
            recording.body.take()
        };
        recording.forget();
        let exact = (rest.is_none() && frames.iter().all(|f| matches!(f, Recorded::Data(_))))
            .then_some(bytes as u64);
        Some(
            ReplayBody {
                frames,
                rest,
                exact,
            }
            .boxed_unsync(),
        )
    }
}

/// A replayed request body: the recorded frames, then the rest of the guest's body.
struct ReplayBody {
    frames: VecDeque<Recorded>,
    rest: Option<WasiBody>,
    /// The size, when the whole body was recorded (and has no trailers).
    exact: Option<u64>,
}

impl Body for ReplayBody {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        if let Some(frame) = self.frames.pop_front() {
            return Poll::Ready(Some(Ok(frame.into_frame())));
        }
        match self.rest.as_mut() {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.exact
            .map_or_else(SizeHint::default, SizeHint::with_exact)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{Full, StreamBody};

    fn streamed(chunks: Vec<&'static str>) -> WasiBody {
        let frames = chunks
            .into_iter()
            .map(|chunk| Ok::<_, Error>(Frame::data(Bytes::from_static(chunk.as_bytes()))));
        StreamBody::new(futures::stream::iter(frames)).boxed_unsync()
    }

    async fn read(body: impl Body<Data = Bytes, Error = Error>) -> String {
        let bytes = body.collect().await.expect("a body").to_bytes();
        String::from_utf8(bytes.to_vec()).expect("text")
    }

    #[tokio::test]
    async fn a_fully_read_body_replays_whole() {
        let (body, recorder) = RecordingBody::new(streamed(vec!["ab", "cd"]));
        assert_eq!(read(body).await, "abcd");
        assert!(recorder.ended());
        let replay = recorder.replay().expect("replayable");
        assert_eq!(replay.size_hint().exact(), Some(4));
        assert_eq!(read(replay).await, "abcd");
        assert!(recorder.replay().is_none(), "one replay only");
    }

    #[tokio::test]
    async fn a_partly_read_body_replays_with_its_rest() {
        let (mut body, recorder) = RecordingBody::new(streamed(vec!["ab", "cd", "ef"]));
        let first = body.frame().await.expect("a frame").expect("data");
        assert_eq!(first.data_ref().map(|d| &d[..]), Some(&b"ab"[..]));
        assert!(!recorder.ended());
        let replay = recorder.replay().expect("replayable");
        assert_eq!(read(replay).await, "abcdef");
        assert_eq!(read(body).await, "", "the rest went to the replay");
    }

    #[tokio::test]
    async fn a_big_body_is_not_replayed() {
        let big = Full::new(Bytes::from(vec![b'x'; MAX_REPLAY_BYTES + 1]))
            .map_err(|never| match never {})
            .boxed_unsync();
        let (body, recorder) = RecordingBody::new(big);
        assert_eq!(read(body).await.len(), MAX_REPLAY_BYTES + 1);
        assert!(recorder.replay().is_none());
    }

    #[tokio::test]
    async fn an_empty_body_has_ended_before_it_is_read() {
        let empty = http_body_util::Empty::new()
            .map_err(|never| match never {})
            .boxed_unsync();
        let (_body, recorder) = RecordingBody::new(empty);
        assert!(recorder.ended());
        let replay = recorder.replay().expect("replayable");
        assert!(replay.is_end_stream());
    }
}
