//! Values boxed where they are built. `Box::pin(make())` builds the value on the stack and
//! copies it into the allocation; for the request path's future that was about 5 KB copied a
//! request (docs/benchmarks.md, issue 21). Allocating first and building into the allocation
//! lets the compiler write the value there directly.

use std::pin::Pin;

/// `make()`, built in a box made before it, and pinned.
#[inline(always)]
pub(crate) fn pinned<T>(make: impl FnOnce() -> T) -> Pin<Box<T>> {
    Box::into_pin(Box::write(Box::new_uninit(), make()))
}
