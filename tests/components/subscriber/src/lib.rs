//! A Redis handler for tests: for each message it stores the payload at `<name>:last` and then
//! adds 1 to the counter `<name>:count` in the `default` key-value store, where `name` is the
//! component variable. A payload `fail` makes it return an error (after counting).

use anyhow::{Context as _, bail};
use bytes::Bytes;
use guest_kit::keyvalue::{atomics, store};
use spin_sdk::redis_component;

#[redis_component]
fn on_message(message: Bytes) -> anyhow::Result<()> {
    let name = spin_sdk::variables::get("name").context("the component variable `name`")?;
    let bucket = store::open("default").map_err(|e| anyhow::anyhow!("{e:?}"))?;
    // `last` first: a test that sees the count has the payload too.
    bucket
        .set(&format!("{name}:last"), &message)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    atomics::increment(&bucket, &format!("{name}:count"), 1)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    if message.as_ref() == b"fail" {
        bail!("{name} was asked to fail");
    }
    Ok(())
}
