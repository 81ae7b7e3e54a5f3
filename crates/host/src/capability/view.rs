//! What a capability's host functions see of an instance: its resource table, and the
//! capability's part of it (`A`). One shape for every capability.

use std::marker::PhantomData;
use wasmtime::component::{HasData, ResourceTable};

/// An instance as one capability sees it.
pub struct View<'a, A> {
    /// The instance's resource table.
    pub table: &'a mut ResourceTable,
    /// The capability's part of the instance (what the component may use).
    pub access: &'a mut A,
}

/// [`HasData`] for a capability whose host functions see [`View<A>`].
pub struct ViewOf<A>(PhantomData<fn() -> A>);

impl<A: Send + 'static> HasData for ViewOf<A> {
    type Data<'a> = View<'a, A>;
}
