//! celeriac's one integration-test binary (ripgrep-style): end-to-end behaviour on the embedded
//! memory broker, and golden fixtures captured from Python Celery 5.7.

mod amqp;
mod beat;
mod canvas;
mod fixtures;
mod fuzz;
mod interop;
mod interop_amqp;
mod memory;
mod redis;
mod regression;
mod semantics;
mod support;
