//! The host's own cost per request (criterion): the lab's trivial component served by the
//! host in this process, one request at a time over a keep-alive connection; each request
//! takes a fresh component instance (from the warm pool), runs it, and answers. Also the cost
//! of loading the app (compiled component from the cache, instance pre-linked).

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use orderly_host::{LoadOptions, LoadedApp, RunningApp};
use orderly_manifest::App as Manifest;
use std::path::{Path, PathBuf};

/// The lab's trivial app.
fn hello_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../lab/apps/hello/spin.toml")
}

/// Load options for the trivial app: stores in memory, its own compile cache, quiet.
fn options(cache: &Path) -> LoadOptions {
    let mut options = LoadOptions::new(hello_manifest());
    options.state_dir = Some(PathBuf::new());
    options.cache_dir = Some(cache.to_path_buf());
    options.echo_component_output = false;
    options
}

/// A keep-alive connection to `running`.
async fn connect(running: &RunningApp) -> SendRequest<Empty<Bytes>> {
    let stream = tokio::net::TcpStream::connect(running.address())
        .await
        .expect("the host listens");
    stream.set_nodelay(true).expect("TCP_NODELAY");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("an HTTP/1.1 handshake");
    tokio::spawn(connection);
    sender
}

/// One GET / answered, read whole.
async fn request(sender: &mut SendRequest<Empty<Bytes>>) {
    sender.ready().await.expect("the connection stays up");
    let request = http::Request::get("/")
        .header(http::header::HOST, "localhost")
        .body(Empty::new())
        .expect("a valid request");
    let response = sender.send_request(request).await.expect("an answer");
    assert!(response.status().is_success(), "{}", response.status());
    response.into_body().collect().await.expect("a body");
}

/// The trivial request through the host, and loading the app.
fn host(c: &mut Criterion) {
    let manifest = Manifest::load(&hello_manifest()).expect("the lab's hello app");
    orderly_host::build_all(&manifest).expect("hello.wasm builds");
    let cache = tempfile::tempdir().expect("a cache dir");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let running = runtime.block_on(async {
        let loaded = LoadedApp::load(&options(cache.path()))
            .await
            .expect("the app loads");
        RunningApp::start(loaded, "127.0.0.1:0".parse().expect("an address"))
            .await
            .expect("the app starts")
    });
    let mut sender = runtime.block_on(connect(&running));

    let mut group = c.benchmark_group("host");
    group.throughput(Throughput::Elements(1));
    group.bench_function("trivial_request", |b| {
        b.iter(|| runtime.block_on(request(&mut sender)));
    });
    group.sample_size(10);
    group.bench_function("load_app_cached", |b| {
        b.iter(|| {
            runtime
                .block_on(LoadedApp::load(&options(cache.path())))
                .expect("the app loads")
        });
    });
    group.finish();
    runtime.block_on(running.shutdown());
}

criterion_group!(benches, host);
criterion_main!(benches);
