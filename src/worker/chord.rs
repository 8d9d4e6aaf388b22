//! A chord header task's end, as Celery's backends call `on_chord_part_return` after the
//! result is stored: its outcome counted once in the result store (`backend::ChordCount`),
//! and, by the one worker whose part completed the count and holds the claim, the body sent
//! with the header's results in order, then the chord's state dropped. A failed part fails the
//! body with `ChordError` (its errbacks called, its chain failed) once every part is in.
//! The delivery of the part is settled only after all this, so a worker killed on the way
//! leaves the part for redelivery, and the redelivered part counts no second time.

use std::rc::Rc;

use serde_json::{json, Value};

use crate::backend::{BackendError, ChordCount, ChordPart};
use crate::canvas::{self, Apply};
use crate::client::options_of;
use crate::protocol::{Embed, ExceptionInfo, Headers, ResultMeta, Signature, State};

use super::shard_ctx::ShardCtx;

/// A header task's outcome on its way to being counted.
pub(crate) struct PartReturn {
    group: String,
    index: Option<i64>,
    part: ChordPart,
    body: Signature,
}

impl PartReturn {
    /// The part a message with headers `h` and `embed` is of a chord (it has a `group` and an
    /// `embed.chord`).
    pub(crate) fn of(h: &Headers, embed: Option<&Embed>, state: &State, result: &Value) -> Option<PartReturn> {
        let body = embed?.chord.clone()?;
        Some(PartReturn {
            group: h.group.clone()?,
            index: h.group_index,
            part: ChordPart { task_id: h.id.clone(), state: state.clone(), result: result.clone() },
            body,
        })
    }

    /// Counts the part; sends the body when it completed the chord. An `Err` means it was not
    /// counted (the store refused or is unreachable): the delivery is left for redelivery.
    pub(crate) async fn run(self, sh: &Rc<ShardCtx>) -> Result<(), BackendError> {
        let backend = sh.shared.client.backend().clone();
        let mut looks = 0;
        let (parts, token) = loop {
            let count =
                backend.chord_part_return(&self.group, self.index, self.part.clone()).await.map_err(|e| match e {
                    BackendError::Refused(why) => {
                        BackendError::Refused(format!("counting it toward chord {}: {why}", self.group))
                    }
                    BackendError::ConnectionLost(why) => {
                        BackendError::ConnectionLost(format!("counting it toward chord {}: {why}", self.group))
                    }
                    other => other,
                })?;
            match count {
                ChordCount::Complete { parts, token } => break (parts, token),
                ChordCount::Counted => return Ok(()),
                // The chord is complete and another worker holds the claim. If it died before
                // sending the body (this part is then likely its redelivered copy), the claim
                // lapses: look again then, and send the body if nobody did.
                ChordCount::Held if looks < 2 => {
                    looks += 1;
                    crate::rt::sleep(std::time::Duration::from_secs(crate::backend::CLAIM_SECS + 1)).await;
                }
                ChordCount::Held => return Ok(()),
            }
        };
        let group = &self.group;
        if let Some(bad) = parts.iter().find(|p| p.state.propagates()) {
            let exc = ExceptionInfo::chord_dependency(&bad.task_id, &bad.result);
            tracing::error!("Chord {group} raised: {}", exc.repr());
            fail_signature(sh, &self.body, &exc).await;
            // A late copy of a part must not fail the body again; the results stay for expiry.
            if let Err(e) = backend.chord_drop_size(group).await {
                tracing::warn!("Chord {group}: cannot drop its size: {e}");
            }
            return Ok(());
        }
        if !backend.chord_claim_extend(group, &token).await? {
            tracing::warn!(
                "Chord callback for {group} not published: dispatch claim is no longer owned by this worker"
            );
            return Ok(());
        }
        let results = Value::Array(parts.into_iter().map(|p| p.result).collect());
        let client = &sh.shared.client;
        let apply = Apply { partial: vec![results], ..Apply::default() };
        let sent = match client.prepare_signature(&self.body, apply, false) {
            Ok(p) => client.send_prepared(p).await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = sent {
            tracing::error!("Chord callback for {group} raised: {e}");
            fail_signature(sh, &self.body, &ExceptionInfo::chord_error(format!("Callback error: {e}"))).await;
        }
        match backend.chord_cleanup(group, &token).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(
                    "Chord callback claim for {group} was lost before cleanup; chord data was left for expiry"
                )
            }
            Err(e) => tracing::warn!("Chord {group}: cannot clean up: {e}; its data is left for expiry"),
        }
        Ok(())
    }
}

/// Fails `sig` without running it (Celery's `chord_error_from_stack`): FAILURE stored under its
/// result id, its errbacks sent with that id, the rest of its chain failed too.
async fn fail_signature(sh: &Rc<ShardCtx>, sig: &Signature, exc: &ExceptionInfo) {
    let id = canvas::freeze(sig).1.id().to_owned();
    let exc = exc.to_value();
    let mut meta = ResultMeta::new(&id, State::Failure, exc.clone());
    meta.parent_id = sig.options.get("parent_id").and_then(Value::as_str).map(str::to_owned);
    let stored = match sh.store.store(meta) {
        crate::backend::Stored::Done(r) => r,
        crate::backend::Stored::Pending(w) => w.await,
    };
    if let Err(e) = stored {
        tracing::error!("Cannot store the failure of {}[{id}]: {e}", sig.task);
    }
    let o = options_of(sig);
    for errback in o.embed.errbacks.iter().flatten() {
        let apply = Apply { partial: vec![json!(id)], parent_id: Some(id.clone()), ..Apply::default() };
        if let Err(e) = sh.shared.client.apply_signature(errback, apply) {
            tracing::error!("Task {}[{id}]: cannot send errback {}: {e}", sig.task, errback.task);
        }
    }
    if let Some(chain) = o.embed.chain.as_deref() {
        fail_chain(sh, chain, &exc);
    }
}

/// Stores `exc` as the FAILURE of every remaining step of a chain that has a result id (as
/// Celery's `mark_as_failure` does), and counts a step that belongs to a chord as failed, so the
/// chord's body fails instead of waiting for ever.
pub(crate) fn fail_chain(sh: &Rc<ShardCtx>, chain: &[Signature], exc: &Value) {
    let backend = sh.shared.client.backend();
    for step in chain {
        let Some(id) = step.task_id() else { continue };
        backend.store_detached(ResultMeta::new(id, State::Failure, exc.clone()));
        let o = options_of(step);
        if let (Some(body), Some((group, index))) = (o.embed.chord, o.group) {
            let part = ChordPart { task_id: id.to_owned(), state: State::Failure, result: exc.clone() };
            let job = PartReturn { group, index: Some(index), part, body };
            let sh = sh.clone();
            crate::rt::spawn_local(async move {
                if let Err(e) = job.run(&sh).await {
                    tracing::error!("Cannot count a failed chain step toward its chord: {e}");
                }
            });
        }
    }
}
