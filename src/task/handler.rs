//! Handlers: the `Handler` trait implemented for functions of up to eight parameters, sync or
//! async, returning a plain `Serialize` value or `Result<T, E>` with `E: Into<TaskError>`.
//!
//! The marker type parameter keeps the four families apart (axum-style). One limit follows from
//! coherence: a `Result<T, E>` whose `E` is itself `Serialize` matches two families and will not
//! register; return `Result<T, TaskError>` (or any non-`Serialize` error) instead.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use serde::Serialize;

use super::{Call, FromInvocation, Invocation, Outcome, TaskError};

/// A task body. Implemented for functions and closures; `M` is an inference marker, never named.
pub trait Handler<M>: Send + Sync + 'static {
    /// How many parameters take positional arguments (extractors excluded).
    fn positional_count(&self) -> usize;
    /// Extracts the parameters and starts the body. An `Err` is an argument error (TypeError).
    fn call(&self, inv: &Invocation<'_>) -> Result<Call, TaskError>;
}

/// Runs a sync function on the shard's blocking pool, so a CPU-heavy or blocking body never
/// stalls the shard's broker and result I/O: `.task("proj.tasks.crunch", ["n"], blocking(crunch))`.
pub fn blocking<F>(f: F) -> Blocking<F> {
    Blocking(Arc::new(f))
}

/// See [`blocking`].
pub struct Blocking<F>(Arc<F>);

#[doc(hidden)]
pub struct SyncPlain;
#[doc(hidden)]
pub struct SyncFallible;
#[doc(hidden)]
pub struct AsyncPlain;
#[doc(hidden)]
pub struct AsyncFallible;
#[doc(hidden)]
pub struct BlockingPlain;
#[doc(hidden)]
pub struct BlockingFallible;

fn extract<T: FromInvocation>(inv: &Invocation<'_>, pos: &mut usize) -> Result<T, TaskError> {
    let p = *pos;
    if T::POSITIONAL {
        *pos += 1;
    }
    T::from_invocation(inv, p)
}

/// The error a panicking task body becomes; the shard keeps running.
pub(crate) fn panic_error(payload: Box<dyn std::any::Any + Send>) -> TaskError {
    let msg = crate::rt::panic_text(&*payload).unwrap_or("task panicked").to_owned();
    TaskError::with_module("celeriac", "TaskPanicked", msg)
}

/// Runs a sync body on the shard's blocking pool; a panic there becomes a FAILURE.
fn on_blocking_pool<R: Send + 'static>(body: impl FnOnce() -> R + Send + 'static, outcome: fn(R) -> Outcome) -> Call {
    Call::Pending(Box::pin(async move {
        match crate::rt::spawn_blocking(move || std::panic::catch_unwind(AssertUnwindSafe(body))).await {
            Ok(v) => outcome(v),
            Err(p) => Outcome::Failure(panic_error(p)),
        }
    }))
}

macro_rules! impl_handler {
    ($($T:ident),*) => {
        impl<F, R, $($T,)*> Handler<(SyncPlain, $($T,)*)> for F
        where
            F: Fn($($T),*) -> R + Send + Sync + 'static,
            R: Serialize,
            $($T: FromInvocation,)*
        {
            fn positional_count(&self) -> usize { 0 $(+ $T::POSITIONAL as usize)* }
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn call(&self, inv: &Invocation<'_>) -> Result<Call, TaskError> {
                let mut pos = 0usize;
                $(let $T = extract::<$T>(inv, &mut pos)?;)*
                Ok(Call::Ready(Outcome::from_value((self)($($T),*))))
            }
        }

        impl<F, R, E, $($T,)*> Handler<(SyncFallible, $($T,)*)> for F
        where
            F: Fn($($T),*) -> Result<R, E> + Send + Sync + 'static,
            R: Serialize,
            E: Into<TaskError>,
            $($T: FromInvocation,)*
        {
            fn positional_count(&self) -> usize { 0 $(+ $T::POSITIONAL as usize)* }
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn call(&self, inv: &Invocation<'_>) -> Result<Call, TaskError> {
                let mut pos = 0usize;
                $(let $T = extract::<$T>(inv, &mut pos)?;)*
                Ok(Call::Ready(Outcome::from_result((self)($($T),*))))
            }
        }

        impl<F, Fut, R, $($T,)*> Handler<(AsyncPlain, $($T,)*)> for F
        where
            F: Fn($($T),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = R> + 'static,
            R: Serialize,
            $($T: FromInvocation,)*
        {
            fn positional_count(&self) -> usize { 0 $(+ $T::POSITIONAL as usize)* }
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn call(&self, inv: &Invocation<'_>) -> Result<Call, TaskError> {
                let mut pos = 0usize;
                $(let $T = extract::<$T>(inv, &mut pos)?;)*
                let fut = (self)($($T),*);
                Ok(Call::Pending(Box::pin(async move { Outcome::from_value(fut.await) })))
            }
        }

        impl<F, Fut, R, E, $($T,)*> Handler<(AsyncFallible, $($T,)*)> for F
        where
            F: Fn($($T),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = Result<R, E>> + 'static,
            R: Serialize,
            E: Into<TaskError>,
            $($T: FromInvocation,)*
        {
            fn positional_count(&self) -> usize { 0 $(+ $T::POSITIONAL as usize)* }
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn call(&self, inv: &Invocation<'_>) -> Result<Call, TaskError> {
                let mut pos = 0usize;
                $(let $T = extract::<$T>(inv, &mut pos)?;)*
                let fut = (self)($($T),*);
                Ok(Call::Pending(Box::pin(async move { Outcome::from_result(fut.await) })))
            }
        }

        impl<F, R, $($T,)*> Handler<(BlockingPlain, $($T,)*)> for Blocking<F>
        where
            F: Fn($($T),*) -> R + Send + Sync + 'static,
            R: Serialize + Send + 'static,
            $($T: FromInvocation + Send + 'static,)*
        {
            fn positional_count(&self) -> usize { 0 $(+ $T::POSITIONAL as usize)* }
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn call(&self, inv: &Invocation<'_>) -> Result<Call, TaskError> {
                let mut pos = 0usize;
                $(let $T = extract::<$T>(inv, &mut pos)?;)*
                let f = self.0.clone();
                Ok(on_blocking_pool(move || f($($T),*), Outcome::from_value))
            }
        }

        impl<F, R, E, $($T,)*> Handler<(BlockingFallible, $($T,)*)> for Blocking<F>
        where
            F: Fn($($T),*) -> Result<R, E> + Send + Sync + 'static,
            R: Serialize + Send + 'static,
            E: Into<TaskError> + Send + 'static,
            $($T: FromInvocation + Send + 'static,)*
        {
            fn positional_count(&self) -> usize { 0 $(+ $T::POSITIONAL as usize)* }
            #[allow(non_snake_case, unused_mut, unused_variables)]
            fn call(&self, inv: &Invocation<'_>) -> Result<Call, TaskError> {
                let mut pos = 0usize;
                $(let $T = extract::<$T>(inv, &mut pos)?;)*
                let f = self.0.clone();
                Ok(on_blocking_pool(move || f($($T),*), Outcome::from_result))
            }
        }
    };
}

impl_handler!();
impl_handler!(T1);
impl_handler!(T1, T2);
impl_handler!(T1, T2, T3);
impl_handler!(T1, T2, T3, T4);
impl_handler!(T1, T2, T3, T4, T5);
impl_handler!(T1, T2, T3, T4, T5, T6);
impl_handler!(T1, T2, T3, T4, T5, T6, T7);
impl_handler!(T1, T2, T3, T4, T5, T6, T7, T8);
