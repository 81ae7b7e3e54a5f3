//! A cron handler for tests, exporting `handle-cron-event` as the `spin-trigger-cron` plugin's
//! world declares it. Each run adds 1 to `<name>:ticks`, keeps `<name>:running` (runs going on
//! now) and `<name>:max-running` (the most at once) in the `default` store, records the event's
//! timestamp at `<name>:timestamp`, and works for the `work_ms` variable's milliseconds.

#[allow(missing_docs, reason = "generated bindings")]
mod bindings {
    spin_sdk::wit_bindgen::generate!({
        path: "../../../wit",
        world: "fermyon:spin-cron/spin-cron",
        runtime_path: "spin_sdk::wit_bindgen::rt",
    });
}

use bindings::fermyon::spin_cron::cron_types::{Error, Metadata};
use guest_kit::keyvalue::{atomics, store};

struct Ticker;

impl bindings::Guest for Ticker {
    fn handle_cron_event(metadata: Metadata) -> Result<(), Error> {
        run(metadata).map_err(Error::Other)
    }
}

bindings::export!(Ticker with_types_in bindings);

fn run(metadata: Metadata) -> Result<(), String> {
    let variable =
        |name: &str| spin_sdk::variables::get(name).map_err(|e| format!("{name}: {e:?}"));
    let name = variable("name")?;
    let work_ms: u64 = variable("work_ms")?
        .parse()
        .map_err(|e| format!("work_ms: {e}"))?;
    let kv = |e: store::Error| format!("{e:?}");
    let bucket = store::open("default").map_err(kv)?;
    let running = atomics::increment(&bucket, &format!("{name}:running"), 1).map_err(kv)?;
    raise_max(&bucket, &format!("{name}:max-running"), running).map_err(kv)?;
    bucket
        .set(
            &format!("{name}:timestamp"),
            metadata.timestamp.to_string().as_bytes(),
        )
        .map_err(kv)?;
    std::thread::sleep(std::time::Duration::from_millis(work_ms));
    atomics::increment(&bucket, &format!("{name}:running"), -1).map_err(kv)?;
    atomics::increment(&bucket, &format!("{name}:ticks"), 1).map_err(kv)?;
    Ok(())
}

/// Raises the decimal value at `key` to at least `value`, with compare-and-swap (the key is
/// seeded first, since a swap on a missing key is unconditional).
fn raise_max(bucket: &store::Bucket, key: &str, value: i64) -> Result<(), store::Error> {
    if !bucket.exists(key)? {
        bucket.set(key, b"0")?;
    }
    let mut cas = atomics::Cas::new(bucket, key)?;
    loop {
        let current: i64 = cas
            .current()?
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .and_then(|text| text.parse().ok())
            .unwrap_or(0);
        if current >= value {
            return Ok(());
        }
        match atomics::swap(cas, value.to_string().as_bytes()) {
            Ok(()) => return Ok(()),
            Err(atomics::CasError::CasFailed(retry)) => cas = retry,
            Err(atomics::CasError::StoreError(error)) => return Err(error),
        }
    }
}
