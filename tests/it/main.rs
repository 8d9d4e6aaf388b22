//! celeriac's one integration-test binary (ripgrep-style): end-to-end behaviour on the embedded
//! memory broker, and golden fixtures captured from Python Celery 5.7.

/// Stamps a suite of `fn(&Env)` tests over every transport (`semantics::Env`): memory://, a
/// redis-server of its own, the shared rabbitmq-server. Defined before the modules that use it.
macro_rules! stamp {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $name() { super::$name(&super::Env::memory()) })*
        }
        mod redis {
            $(#[test] fn $name() { super::$name(&super::Env::redis()) })*
        }
        mod amqp {
            $(#[test] fn $name() { super::$name(&super::Env::amqp()) })*
        }
    };
}

mod amqp;
mod beat;
mod canvas;
mod cli;
mod control;
mod events;
mod fixtures;
mod fuzz;
mod interop;
mod interop_amqp;
mod memory;
mod redis;
mod regression;
mod semantics;
mod support;
