//! What a host capability's functions see of an instance: its resource table, and what the
//! component was granted (`A`). One shape for key-value, SQLite and Redis.

use std::marker::PhantomData;
use wasmtime::component::{HasData, ResourceTable};

/// An instance as one capability sees it.
pub struct View<'a, A> {
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
    /// What the component may use.
    pub access: &'a A,
}

/// [`HasData`] for a capability whose host functions see [`View<A>`].
pub struct ViewOf<A>(PhantomData<fn() -> A>);

impl<A: Send + Sync + 'static> HasData for ViewOf<A> {
    type Data<'a> = View<'a, A>;
}
