//! `spin:sqlite/sqlite@3.0.0`: the host functions over the application's SQLite databases
//! (by label from the runtime config, in WAL mode; see [`databases`] for how connections are
//! lent to guests); a component opens the labels it lists in `sqlite_databases`.

mod databases;

pub use databases::Databases;

use crate::capability::bindings::spin::sqlite::sqlite as wit;
use crate::capability::{
    Capability, Grant, GrantContext, Has, InstanceContext, OpenContext, View, ViewOf,
};
use databases::Lease;
use orderly_manifest::ConfigProblem;
use rusqlite::types::{Value as SqlValue, ValueRef};
use std::sync::Arc;
use wasmtime::component::{Linker, Resource};

/// Largest query result handed to a guest.
const MAX_RESULT_BYTES: usize = 64 << 20;

/// A guest's open connection (`spin:sqlite` `connection` resource).
pub struct GuestConnection {
    /// `None` only while a statement runs on a blocking thread.
    open: Option<Lease>,
}

/// The SQLite databases one component instance may open.
pub type SqliteAccess = Grant<Databases>;

/// What the SQLite host functions see of an instance.
pub type SqliteView<'a> = View<'a, SqliteAccess>;

impl Capability for Databases {
    type Grant = SqliteAccess;
    type Instance = SqliteAccess;

    fn open(cx: &OpenContext<'_>) -> Result<Self, Vec<ConfigProblem>> {
        Self::open(
            &cx.labels(|c| &c.sqlite_databases),
            cx.runtime_config,
            cx.state_dir,
        )
    }

    fn grant(self: &Arc<Self>, cx: &GrantContext<'_>) -> Result<SqliteAccess, Vec<ConfigProblem>> {
        Ok(Grant::new(Arc::clone(self), &cx.spec.sqlite_databases))
    }

    fn instance(grant: &SqliteAccess, _: &InstanceContext) -> SqliteAccess {
        grant.clone()
    }

    fn add_to_linker<T: Has<Self>>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
        wit::add_to_linker::<T, ViewOf<SqliteAccess>>(linker, <T as Has<Self>>::part)
    }

    fn close(&self) {
        Databases::close(self);
    }
}

type WasmResult<T> = wasmtime::Result<Result<T, wit::Error>>;

impl wit::Host for SqliteView<'_> {}

impl wit::HostConnection for SqliteView<'_> {
    async fn open(&mut self, database: String) -> WasmResult<Resource<GuestConnection>> {
        let Some(databases) = self.access.open(&database) else {
            return Ok(Err(wit::Error::AccessDenied));
        };
        let Some(db) = databases.get(&database) else {
            return Ok(Err(wit::Error::NoSuchDatabase));
        };
        match db.lend().await {
            Ok(open) => Ok(Ok(self.table.push(GuestConnection { open: Some(open) })?)),
            Err(error) => Ok(Err(error)),
        }
    }

    async fn execute(
        &mut self,
        connection: Resource<GuestConnection>,
        statement: String,
        parameters: Vec<wit::Value>,
    ) -> WasmResult<wit::QueryResult> {
        let Some(open) = self.table.get_mut(&connection)?.open.take() else {
            return Ok(Err(wit::Error::InvalidConnection));
        };
        let (open, result) = tokio::task::spawn_blocking(move || {
            let result = run_statement(&open, &statement, parameters);
            (open, result)
        })
        .await?;
        self.table.get_mut(&connection)?.open = Some(open);
        Ok(result)
    }

    async fn last_insert_rowid(
        &mut self,
        connection: Resource<GuestConnection>,
    ) -> wasmtime::Result<i64> {
        Ok(with_lease(self.table.get(&connection)?, |lease| {
            lease.connection().last_insert_rowid()
        }))
    }

    async fn changes(&mut self, connection: Resource<GuestConnection>) -> wasmtime::Result<u64> {
        Ok(with_lease(self.table.get(&connection)?, Lease::changes))
    }

    async fn drop(&mut self, connection: Resource<GuestConnection>) -> wasmtime::Result<()> {
        self.table.delete(connection)?;
        Ok(())
    }
}

fn with_lease<R: Default>(guest: &GuestConnection, read: impl FnOnce(&Lease) -> R) -> R {
    guest.open.as_ref().map(read).unwrap_or_default()
}

fn run_statement(
    lease: &Lease,
    statement: &str,
    parameters: Vec<wit::Value>,
) -> Result<wit::QueryResult, wit::Error> {
    let io = |error: rusqlite::Error| wit::Error::Io(error.to_string());
    let mut prepared = lease.connection().prepare_cached(statement).map_err(io)?;
    let _gate = if prepared.readonly() {
        None
    } else {
        lease.write_gate()
    };
    let columns: Vec<String> = prepared
        .column_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    let parameters = parameters.into_iter().map(to_sql);
    let mut rows = prepared
        .query(rusqlite::params_from_iter(parameters))
        .map_err(io)?;
    let mut result = Vec::new();
    let mut size = 0usize;
    while let Some(row) = rows.next().map_err(io)? {
        let mut values = Vec::with_capacity(columns.len());
        for index in 0..columns.len() {
            let value = from_sql(row.get_ref(index).map_err(io)?)?;
            size += value_size(&value);
            values.push(value);
        }
        if size > MAX_RESULT_BYTES {
            return Err(wit::Error::Io(format!(
                "query result exceeds the limit of {MAX_RESULT_BYTES} bytes"
            )));
        }
        result.push(wit::RowResult { values });
    }
    Ok(wit::QueryResult {
        columns,
        rows: result,
    })
}

fn to_sql(value: wit::Value) -> SqlValue {
    match value {
        wit::Value::Integer(i) => SqlValue::Integer(i),
        wit::Value::Real(r) => SqlValue::Real(r),
        wit::Value::Text(t) => SqlValue::Text(t),
        wit::Value::Blob(b) => SqlValue::Blob(b),
        wit::Value::Null => SqlValue::Null,
    }
}

fn from_sql(value: ValueRef<'_>) -> Result<wit::Value, wit::Error> {
    Ok(match value {
        ValueRef::Null => wit::Value::Null,
        ValueRef::Integer(i) => wit::Value::Integer(i),
        ValueRef::Real(r) => wit::Value::Real(r),
        ValueRef::Text(bytes) => wit::Value::Text(
            String::from_utf8(bytes.to_vec())
                .map_err(|_| wit::Error::Io("a TEXT value is not valid UTF-8".into()))?,
        ),
        ValueRef::Blob(bytes) => wit::Value::Blob(bytes.to_vec()),
    })
}

fn value_size(value: &wit::Value) -> usize {
    match value {
        wit::Value::Text(text) => text.len(),
        wit::Value::Blob(blob) => blob.len(),
        _ => 8,
    }
}
