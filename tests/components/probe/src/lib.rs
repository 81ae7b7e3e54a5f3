//! A test fixture: each endpoint exercises one host capability and reports what the guest saw,
//! so the black-box tests in `tests/` can check the host from the outside.

mod outbound;

use guest_kit::keyvalue::{atomics, store as wasi_kv};
use serde_json::{Value as Json, json};
use spin_sdk::http::{Request, Response};
use spin_sdk::http_component;
use spin_sdk::key_value::Store;
use spin_sdk::sqlite3::{Connection, Value as SqlValue};
use std::collections::HashMap;

#[http_component]
fn handle(request: Request) -> Response {
    let path = guest_kit::path_info(&request);
    let query: HashMap<String, String> = guest_kit::query_pairs(request.query()).collect();
    let param = |name: &str| query.get(name).cloned().unwrap_or_default();
    let (status, body) = match path.as_str() {
        "/" | "/headers" => (200, headers(&request)),
        "/count" => {
            // A fresh instance per request starts at zero every time.
            static CALLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            (
                200,
                json!(CALLS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1),
            )
        }
        "/echo" => (
            200,
            json!({
                "method": request.method().to_string(),
                "uri": request.uri(),
                "body": String::from_utf8_lossy(request.body()),
            }),
        ),
        "/kv/get" => kv(&param("label"), |s| {
            Ok(json!(
                s.get(&param("key"))?
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            ))
        }),
        "/kv/set" => kv(&param("label"), |s| {
            s.set(&param("key"), request.body())?;
            Ok(json!("ok"))
        }),
        "/kv/delete" => kv(&param("label"), |s| {
            s.delete(&param("key"))?;
            Ok(json!("ok"))
        }),
        "/kv/exists" => kv(&param("label"), |s| Ok(json!(s.exists(&param("key"))?))),
        "/kv/keys" => kv(&param("label"), |s| Ok(json!(s.get_keys()?))),
        "/wasi-kv/get" => wasi_kv(&param("label"), |b| {
            Ok(json!(
                b.get(&param("key"))?
                    .map(|v| String::from_utf8_lossy(&v).into_owned())
            ))
        }),
        "/wasi-kv/list" => wasi_kv(&param("label"), |b| Ok(json!(b.list_keys(None)?.keys))),
        "/wasi-kv/batch" => wasi_kv(&param("label"), |b| {
            use guest_kit::keyvalue::batch;
            batch::set_many(
                b,
                &[("b1".into(), b"1".to_vec()), ("b2".into(), b"2".to_vec())],
            )?;
            let got = batch::get_many(b, &["b1".into(), "b2".into(), "b3".into()])?;
            batch::delete_many(b, &["b1".into()])?;
            let after = b.exists("b1")?;
            Ok(json!({
                "got": got.into_iter().map(|(k, v)| (k, v.map(|v| String::from_utf8_lossy(&v).into_owned()))).collect::<Vec<_>>(),
                "b1_after_delete": after,
            }))
        }),
        "/wasi-kv/increment" => wasi_kv(&param("label"), |b| {
            let delta = param("delta").parse().unwrap_or(1);
            Ok(json!(atomics::increment(b, &param("key"), delta)?))
        }),
        "/wasi-kv/cas-add" => wasi_kv(&param("label"), |b| {
            cas_add(b, &param("key"), param("times").parse().unwrap_or(1))
        }),
        "/variables" => match spin_sdk::variables::get(&param("name")) {
            Ok(value) => (200, json!({ "value": value })),
            Err(error) => (200, json!({ "error": format!("{error:?}") })),
        },
        "/env" => (200, json!(std::env::var(param("name")).ok())),
        "/fetch" => (
            200,
            outbound::fetch(&param("url"), param("timeout_ms").parse().ok()),
        ),
        "/sql" => (200, sql(&param("db"), request.body())),
        "/sql/abandon" => (200, abandon_transaction(request.body())),
        "/redis/publish" => redis(&param("address"), |c| {
            c.publish(&param("channel"), request.body())?;
            Ok(json!("published"))
        }),
        "/redis/burst" => redis(&param("address"), |c| {
            let count: u32 = param("count").parse().unwrap_or(0);
            for n in 0..count {
                c.publish(&param("channel"), n.to_string().as_bytes())?;
            }
            Ok(json!(count))
        }),
        "/redis/cmd" => redis(&param("address"), |c| {
            redis_command(c, &param("op"), &param("key"), request.body())
        }),
        "/file" => match std::fs::read_to_string(param("path")) {
            Ok(content) => (200, json!({ "content": content })),
            Err(error) => (200, json!({ "error": error.to_string() })),
        },
        "/trap" => panic!("the probe was asked to trap"),
        "/sleep" => {
            let ms = param("ms").parse().unwrap_or(0);
            println!("sleep started");
            std::thread::sleep(std::time::Duration::from_millis(ms));
            (200, json!({ "slept_ms": ms }))
        }
        "/busy" => {
            // Burns CPU without ever calling the host in a way that would yield.
            let ms = param("ms").parse().unwrap_or(0);
            println!("busy started");
            let started = std::time::Instant::now();
            let mut spins = 0u64;
            while started.elapsed() < std::time::Duration::from_millis(ms) {
                spins = spins.wrapping_add(1);
            }
            (200, json!({ "busy_ms": ms, "spins": spins }))
        }
        "/loop" => {
            // Spins forever without calling the host: only the host's deadline stops it.
            println!("loop started");
            let mut spins = 0u64;
            loop {
                spins = std::hint::black_box(spins.wrapping_add(1));
            }
        }
        "/oom" => {
            // Takes memory until the allocator fails (the host's memory limit).
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1; 1 << 20]);
                std::hint::black_box(&hoard);
            }
        }
        "/spew" => {
            // Writes output without end: only the host's output limit stops it.
            let line = "x".repeat(1000);
            loop {
                println!("{line}");
            }
        }
        "/print" => {
            println!("{}", param("text"));
            eprintln!("err: {}", param("text"));
            (200, json!("printed"))
        }
        // Unknown endpoints still show what arrived, so routing tests can see any path.
        _ => (404, headers(&request)),
    };
    guest_kit::json(status, &body)
}

fn headers(request: &Request) -> Json {
    let map: serde_json::Map<String, Json> = request
        .headers()
        .map(|(name, value)| (name.to_owned(), json!(value.as_str().unwrap_or_default())))
        .collect();
    Json::Object(map)
}

fn kv(
    label: &str,
    work: impl FnOnce(&Store) -> Result<Json, spin_sdk::key_value::Error>,
) -> (u16, Json) {
    match Store::open(label).and_then(|store| work(&store)) {
        Ok(value) => (200, json!({ "value": value })),
        Err(error) => (200, json!({ "error": format!("{error:?}") })),
    }
}

fn wasi_kv(
    label: &str,
    work: impl FnOnce(&wasi_kv::Bucket) -> Result<Json, wasi_kv::Error>,
) -> (u16, Json) {
    match wasi_kv::open(label).and_then(|bucket| work(&bucket)) {
        Ok(value) => (200, json!({ "value": value })),
        Err(error) => (200, json!({ "error": format!("{error:?}") })),
    }
}

fn redis(
    address: &str,
    work: impl FnOnce(&spin_sdk::redis::Connection) -> Result<Json, spin_sdk::redis::Error>,
) -> (u16, Json) {
    match spin_sdk::redis::Connection::open(address).and_then(|connection| work(&connection)) {
        Ok(value) => (200, json!({ "value": value })),
        Err(error) => (200, json!({ "error": format!("{error:?}") })),
    }
}

/// One outbound Redis call; `body` is the value, or space-separated members for sets.
fn redis_command(
    connection: &spin_sdk::redis::Connection,
    op: &str,
    key: &str,
    body: &[u8],
) -> Result<Json, spin_sdk::redis::Error> {
    use spin_sdk::redis::{RedisParameter, RedisResult};
    let members = || {
        String::from_utf8_lossy(body)
            .split_whitespace()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    Ok(match op {
        "get" => json!(
            connection
                .get(key)?
                .map(|v| String::from_utf8_lossy(&v).into_owned())
        ),
        "set" => {
            connection.set(key, body)?;
            json!("ok")
        }
        "incr" => json!(connection.incr(key)?),
        "del" => json!(connection.del(&[key.to_owned()])?),
        "sadd" => json!(connection.sadd(key, &members())?),
        "srem" => json!(connection.srem(key, &members())?),
        "smembers" => json!(connection.smembers(key)?),
        "execute" => {
            let words = members();
            let (command, args) = words.split_first().expect("a command");
            let args: Vec<RedisParameter> = args
                .iter()
                .map(|a| {
                    a.parse().map_or_else(
                        |_| RedisParameter::Binary(a.as_bytes().to_vec()),
                        RedisParameter::Int64,
                    )
                })
                .collect();
            let results: Vec<Json> = connection
                .execute(command, &args)?
                .into_iter()
                .map(|r| match r {
                    RedisResult::Nil => Json::Null,
                    RedisResult::Status(s) => json!({ "status": s }),
                    RedisResult::Int64(n) => json!(n),
                    RedisResult::Binary(b) => json!(String::from_utf8_lossy(&b)),
                })
                .collect();
            json!(results)
        }
        other => json!({ "unknown op": other }),
    })
}

/// Adds 1 to the decimal counter at `key`, `times` times, with compare-and-swap; retries lost
/// races with the handle the host returns.
fn cas_add(bucket: &wasi_kv::Bucket, key: &str, times: u32) -> Result<Json, wasi_kv::Error> {
    let mut conflicts = 0u32;
    for _ in 0..times {
        let mut cas = atomics::Cas::new(bucket, key)?;
        loop {
            let current: u64 = cas
                .current()?
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .and_then(|text| text.parse().ok())
                .unwrap_or(0);
            match atomics::swap(cas, (current + 1).to_string().as_bytes()) {
                Ok(()) => break,
                Err(atomics::CasError::CasFailed(retry)) => {
                    conflicts += 1;
                    cas = retry;
                }
                Err(atomics::CasError::StoreError(error)) => return Err(error),
            }
        }
    }
    Ok(json!({ "conflicts": conflicts }))
}

fn sql(db: &str, body: &[u8]) -> Json {
    let request: Json = serde_json::from_slice(body).unwrap_or_default();
    let statement = request["statement"].as_str().unwrap_or_default();
    let params: Vec<SqlValue> = request["params"]
        .as_array()
        .map(|values| values.iter().map(to_sql).collect())
        .unwrap_or_default();
    let db = if db.is_empty() { "default" } else { db };
    match Connection::open(db).and_then(|c| c.execute(statement, &params).map(|r| (r, c))) {
        Ok((result, connection)) => json!({
            "columns": result.columns,
            "rows": result.rows.iter().map(|row| row.values.iter().map(from_sql).collect::<Vec<_>>()).collect::<Vec<_>>(),
            "changes": connection.changes(),
            "last_insert_rowid": connection.last_insert_rowid(),
        }),
        Err(error) => json!({ "error": format!("{error:?}") }),
    }
}

/// Runs the statement inside a transaction that is never committed.
fn abandon_transaction(body: &[u8]) -> Json {
    let statement = String::from_utf8_lossy(body);
    let result = Connection::open_default().and_then(|c| {
        c.execute("BEGIN", &[])?;
        c.execute(&statement, &[])
    });
    json!({ "ran": result.is_ok() })
}

fn to_sql(value: &Json) -> SqlValue {
    match value {
        Json::Null => SqlValue::Null,
        Json::Bool(b) => SqlValue::Integer(i64::from(*b)),
        Json::Number(n) => n.as_i64().map_or_else(
            || SqlValue::Real(n.as_f64().unwrap_or(0.0)),
            SqlValue::Integer,
        ),
        Json::String(s) => SqlValue::Text(s.clone()),
        other => SqlValue::Blob(other.to_string().into_bytes()),
    }
}

fn from_sql(value: &SqlValue) -> Json {
    match value {
        SqlValue::Null => Json::Null,
        SqlValue::Integer(i) => json!(i),
        SqlValue::Real(r) => json!(r),
        SqlValue::Text(t) => json!(t),
        SqlValue::Blob(b) => json!({ "blob": b }),
    }
}
