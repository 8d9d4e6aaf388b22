//! Layer 1: canvas, pure. Builders of Celery's signature dicts (`group`, `chain` and `|`,
//! `chord`, `chunks`, `xmap`, `xstarmap`) and their lowering ([`lower`]) into the plain task
//! signatures a producer sends, each with the options Celery 5.7 puts on its message: frozen task
//! ids, `group`/`group_index`, the remaining `chain` in reverse order, the `chord` body, and the
//! chord sizes to store first. No I/O: the client and the worker carry a [`Plan`] out.
//!
//! ```
//! use celeriac::canvas::{chord, group};
//! use celeriac::protocol::Signature;
//! use serde_json::json;
//!
//! let add = |x: i64, y: i64| Signature::new("proj.tasks.add", vec![json!(x), json!(y)]);
//! let flow = chord(vec![add(1, 1), add(2, 2)], Signature::new("proj.tasks.tsum", vec![]));
//! let plan = celeriac::canvas::lower(&flow, Default::default()).unwrap();
//! assert_eq!(plan.sends.len(), 2);           // the header's two tasks
//! assert_eq!(plan.chord_sizes[0].1, 2);      // stored before they are sent
//! let _ = group(vec![add(3, 3)]) | Signature::new("proj.tasks.tsum", vec![]); // a chord too
//! ```

mod chain;
mod chord;
mod chunks;
mod group;
mod plan;
mod signature;

pub use chain::chain;
pub use chord::chord;
pub use chunks::{chunks, expand_chunks, xmap, xstarmap};
pub use group::group;
pub use plan::{chord_size, freeze, lower, Apply, CanvasError, Frozen, Plan, Send};
