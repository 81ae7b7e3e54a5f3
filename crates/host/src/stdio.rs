//! Component stdout and stderr: each line goes to the host's terminal prefixed with the component
//! id, and unchanged to `<log-dir>/<component>_{stdout,stderr}.txt` (as Spin writes them). One
//! instance may write a bounded amount to each; past it, the write traps and the instance stops
//! (a guest writing endless output must not fill the disk).

use crate::services::lock::lock;
use bytes::Bytes;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError, StreamResult};

/// Which of the host's streams a component stream is echoed to.
#[derive(Debug, Clone, Copy)]
pub enum Terminal {
    /// The host's stdout.
    Stdout,
    /// The host's stderr.
    Stderr,
    /// Not echoed (log file only).
    Quiet,
}

/// One component's stdout or stderr, shared by all its instances.
#[derive(Clone)]
pub struct ComponentOutput {
    sink: Arc<Sink>,
    stream: String,
}

struct Sink {
    prefix: String,
    terminal: Terminal,
    file: Option<Mutex<File>>,
    /// What one instance may write, in bytes.
    limit: usize,
}

/// An instance wrote more than its output limit.
#[derive(Debug, thiserror::Error)]
#[error("the component wrote more than {limit} bytes to {stream}; the instance was stopped")]
pub(crate) struct OutputLimitExceeded {
    limit: usize,
    stream: String,
}

impl ComponentOutput {
    /// Output of `component` named `stream` (`stdout`/`stderr`), logged under `log_dir` when
    /// given and echoed to `terminal`; each instance may write up to `limit` bytes.
    pub fn new(
        component: &str,
        stream: &str,
        log_dir: Option<&Path>,
        terminal: Terminal,
        limit: usize,
    ) -> std::io::Result<Self> {
        let file = match log_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                let file = File::options()
                    .create(true)
                    .append(true)
                    .open(dir.join(format!("{component}_{stream}.txt")))?;
                Some(Mutex::new(file))
            }
            None => None,
        };
        Ok(Self {
            sink: Arc::new(Sink {
                prefix: format!("[{component}] "),
                terminal,
                file,
                limit,
            }),
            stream: stream.to_owned(),
        })
    }

    fn writer(&self) -> LineWriter {
        LineWriter {
            sink: Arc::clone(&self.sink),
            partial: Vec::new(),
            left: self.sink.limit,
            stream: self.stream.clone(),
        }
    }
}

impl Sink {
    fn write_file(&self, bytes: &[u8]) {
        if let Some(file) = &self.file {
            let mut file = lock(file);
            // Losing a log line must not fail the guest.
            let _ = file.write_all(bytes);
        }
    }

    fn write_lines(&self, lines: &[u8]) {
        let mut out = Vec::with_capacity(lines.len() + self.prefix.len());
        for line in lines.split_inclusive(|b| *b == b'\n') {
            out.extend_from_slice(self.prefix.as_bytes());
            out.extend_from_slice(line);
        }
        if !out.ends_with(b"\n") {
            out.push(b'\n');
        }
        // As above: a closed terminal must not fail the guest.
        let _ = match self.terminal {
            Terminal::Stdout => std::io::stdout().lock().write_all(&out),
            Terminal::Stderr => std::io::stderr().lock().write_all(&out),
            Terminal::Quiet => Ok(()),
        };
    }
}

/// One instance's handle on a [`ComponentOutput`]: buffers a partial line until its newline.
struct LineWriter {
    sink: Arc<Sink>,
    partial: Vec<u8>,
    /// What the instance may still write.
    left: usize,
    stream: String,
}

impl LineWriter {
    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), OutputLimitExceeded> {
        self.left = self
            .left
            .checked_sub(bytes.len())
            .ok_or_else(|| OutputLimitExceeded {
                limit: self.sink.limit,
                stream: self.stream.clone(),
            })?;
        self.sink.write_file(bytes);
        if matches!(self.sink.terminal, Terminal::Quiet) {
            return Ok(());
        }
        self.partial.extend_from_slice(bytes);
        if let Some(end) = self.partial.iter().rposition(|b| *b == b'\n') {
            let rest = self.partial.split_off(end + 1);
            let complete = std::mem::replace(&mut self.partial, rest);
            self.sink.write_lines(&complete);
        }
        Ok(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if !self.partial.is_empty() {
            self.sink.write_lines(&self.partial);
        }
    }
}

impl IsTerminal for ComponentOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for ComponentOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.writer())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.writer())
    }
}

#[async_trait::async_trait]
impl Pollable for LineWriter {
    async fn ready(&mut self) {}
}

impl OutputStream for LineWriter {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.write_bytes(&bytes)
            .map_err(|exceeded| StreamError::Trap(exceeded.into()))
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(1 << 20)
    }
}

impl tokio::io::AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(
            self.write_bytes(buf)
                .map(|()| buf.len())
                .map_err(std::io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_file_gets_raw_bytes_from_every_instance() {
        let dir = tempfile::tempdir().unwrap();
        let output =
            ComponentOutput::new("orders", "stdout", Some(dir.path()), Terminal::Quiet, 1024)
                .unwrap();
        let mut first = output.writer();
        let mut second = output.writer();
        first.write_bytes(b"hello ").unwrap();
        second.write_bytes(b"other\n").unwrap();
        first.write_bytes(b"world\n").unwrap();
        let logged = std::fs::read_to_string(dir.path().join("orders_stdout.txt")).unwrap();
        assert_eq!(logged, "hello other\nworld\n");
    }

    #[test]
    fn partial_lines_wait_for_their_newline() {
        let output = ComponentOutput::new("c", "stderr", None, Terminal::Stderr, 1024).unwrap();
        let mut writer = output.writer();
        writer.write_bytes(b"no newline yet").unwrap();
        assert_eq!(writer.partial, b"no newline yet");
        writer.write_bytes(b" done\nnext").unwrap();
        assert_eq!(writer.partial, b"next");
    }

    #[test]
    fn an_instance_writes_up_to_its_limit_and_no_more() {
        let dir = tempfile::tempdir().unwrap();
        let output =
            ComponentOutput::new("c", "stdout", Some(dir.path()), Terminal::Quiet, 10).unwrap();
        let mut writer = output.writer();
        writer.write_bytes(b"0123456789").unwrap();
        let exceeded = writer.write_bytes(b"x").unwrap_err();
        assert!(
            exceeded
                .to_string()
                .contains("more than 10 bytes to stdout")
        );
        let mut next = output.writer();
        next.write_bytes(b"fresh\n").unwrap();
        let logged = std::fs::read_to_string(dir.path().join("c_stdout.txt")).unwrap();
        assert_eq!(
            logged, "0123456789fresh\n",
            "the instance's own limit, not the component's"
        );
    }
}
