//! Applying a signature as Celery's `Signature.apply_async(args, **options)` does: the canvas
//! lowering ([`crate::canvas::lower`]) freezes every result id and yields plain task signatures;
//! this sends them (chord sizes stored first) and returns the frozen results. A signature's
//! `options` (`task_id`, `queue`, `countdown`, `link`, `chain`, `chord`, …) are read here into
//! the message's. The worker sends link callbacks, errbacks, chain steps and chord bodies this way.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::canvas::{self, Apply, Frozen};
use crate::protocol::{Embed, Signature, TaskMessage};
use crate::transport::Route;
use crate::{Error, Result};

use super::{Applied, Client, GroupResult, SendOptions};

fn signatures(v: Option<&Value>) -> Option<Vec<Signature>> {
    match v? {
        Value::Array(list) => serde_json::from_value(Value::Array(list.clone())).ok(),
        Value::Null => None,
        one => serde_json::from_value(one.clone()).ok().map(|s| vec![s]),
    }
}

fn seconds(v: &Value) -> Option<std::time::Duration> {
    v.as_f64().filter(|s| s.is_finite() && *s >= 0.0).map(std::time::Duration::from_secs_f64)
}

fn instant(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?).ok().map(|t| t.with_timezone(&Utc))
}

/// The send options a signature's `options` ask for.
pub(crate) fn options_of(sig: &Signature) -> SendOptions {
    let o = &sig.options;
    let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut s = SendOptions {
        task_id: text("task_id"),
        queue: text("queue"),
        exchange: text("exchange"),
        routing_key: text("routing_key"),
        shadow: text("shadow"),
        priority: o.get("priority").and_then(Value::as_u64).map(|p| p.min(255) as u8),
        countdown: o.get("countdown").and_then(seconds),
        eta: o.get("eta").and_then(instant),
        time_limit: o.get("time_limit").and_then(Value::as_f64),
        soft_time_limit: o.get("soft_time_limit").and_then(Value::as_f64),
        root_id: text("root_id"),
        parent_id: text("parent_id"),
        reply_to: text("reply_to"),
        ignore_result: o.get("ignore_result").and_then(Value::as_bool),
        ..SendOptions::default()
    };
    match o.get("expires") {
        Some(v) if v.is_number() => s.expires_in = seconds(v),
        Some(v) => s.expires_at = instant(v),
        None => {}
    }
    if let Some(Value::Object(h)) = o.get("headers") {
        s.headers = h.clone();
    }
    if let (Some(g), Some(i)) = (text("group_id"), o.get("group_index").and_then(Value::as_i64)) {
        s.group = Some((g, i));
    }
    s.embed = Embed {
        callbacks: signatures(o.get("link")),
        errbacks: signatures(o.get("link_error")),
        chain: signatures(o.get("chain")),
        chord: o.get("chord").filter(|c| !c.is_null()).and_then(|c| serde_json::from_value(c.clone()).ok()),
    };
    s
}

fn leaf_ids<'a>(f: &'a Frozen, out: &mut std::collections::HashSet<&'a str>) {
    match f {
        Frozen::Task(id) => {
            out.insert(id);
        }
        Frozen::Group { results, .. } => results.iter().for_each(|r| leaf_ids(r, out)),
    }
}

/// A lowered signature with its messages built: chord sizes to store, then the messages in order.
pub(crate) struct Prepared {
    sizes: Vec<(String, u64)>,
    messages: Vec<(Route, TaskMessage)>,
    /// What the caller gets back.
    pub(crate) result: Applied,
}

impl Client {
    /// Sends `sig` (`sig.apply_async()`): a task, or a chain, group, chord, chunks, map or
    /// starmap of them, nested as deep as you like. Returns the result the caller waits on: a
    /// task's, a chain's last step's, a chord body's, or a [`GroupResult`].
    pub fn send_signature(&self, sig: &Signature) -> Result<Applied> {
        self.apply_signature(sig, Apply::default())
    }

    /// `sig.apply_async(args)`: as [`Self::send_signature`] with `args` prepended to the
    /// signature's own (unless it is immutable).
    pub fn send_signature_with(&self, sig: &Signature, args: Vec<Value>) -> Result<Applied> {
        self.apply_signature(sig, Apply { partial: args, ..Apply::default() })
    }

    /// Lowers `sig` and builds its messages; `watch`: subscribe to the results before they are
    /// sent (a caller that will wait on them).
    pub(crate) fn prepare_signature(&self, sig: &Signature, mut apply: Apply, watch: bool) -> Result<Prepared> {
        apply.reply_to.get_or_insert_with(|| self.oid().to_owned());
        let plan = canvas::lower(sig, apply).map_err(|e| Error::Args(e.to_string()))?;
        if let Some(why) = self.backend().refuses_chords().filter(|_| !plan.chord_sizes.is_empty()) {
            return Err(Error::Args(format!("{}: {why}", sig.task)));
        }
        let mut messages = Vec::with_capacity(plan.sends.len());
        let mut watched = std::collections::HashMap::new();
        // Only what the caller gets back is watched (a chord's 10,000 header results are not).
        let mut leaves = std::collections::HashSet::new();
        leaf_ids(&plan.result, &mut leaves);
        for send in plan.sends {
            let mut o = options_of(&send.sig);
            if send.chain.is_some() {
                o.embed.chain = send.chain;
            }
            if send.chord.is_some() {
                o.embed.chord = send.chord;
            }
            let sig = &send.sig;
            let watch = watch && o.task_id.as_deref().is_some_and(|id| leaves.contains(id));
            let (msg, route, result) = self.prepare(&sig.task, &sig.args, &sig.kwargs, &o, watch)?;
            watched.insert(result.id().to_owned(), result);
            messages.push((route, msg));
        }
        let result = self.applied(&plan.result, &mut watched);
        Ok(Prepared { sizes: plan.chord_sizes, messages, result })
    }

    fn applied(&self, f: &Frozen, watched: &mut std::collections::HashMap<String, super::AsyncResult>) -> Applied {
        match f {
            Frozen::Task(id) => Applied::Task(watched.remove(id).unwrap_or_else(|| self.async_result(id.clone()))),
            Frozen::Group { id, results } => {
                let members = results.iter().map(|r| self.applied(r, watched)).collect();
                Applied::Group(GroupResult::new(id.clone(), members, self.clone()))
            }
        }
    }

    /// Sends what [`Self::prepare_signature`] built, from an executor: chord sizes stored, then
    /// each message published, each awaited.
    pub(crate) async fn send_prepared(&self, p: Prepared) -> Result<Applied> {
        for (group, size) in &p.sizes {
            self.backend().set_chord_size(group, *size).await?;
        }
        for (route, msg) in p.messages {
            let sent = self.sent_event(&msg, &route);
            self.broker().publish_async(&route, msg).await?;
            self.emit_sent([sent]);
        }
        Ok(p.result)
    }

    /// Applies `sig` with `apply`. From a thread outside the shards it waits until everything
    /// is stored and published; on a shard (a worker sending a workflow's next step) it does not
    /// block the shard: publishes go out as the broker's own publishes do, and a plan that must
    /// store chord sizes first runs as a task of the shard, its failures logged.
    pub(crate) fn apply_signature(&self, sig: &Signature, apply: Apply) -> Result<Applied> {
        let on_shard = crate::rt::on_executor();
        let p = self.prepare_signature(sig, apply, !on_shard)?;
        if !on_shard {
            for (group, size) in &p.sizes {
                self.backend().set_chord_size_blocking(group, *size)?;
            }
            // Runs of messages to one route (a chord's header, a group) leave in one batch.
            let mut messages = p.messages.into_iter().peekable();
            while let Some((route, first)) = messages.next() {
                let mut run = vec![first];
                while let Some((_, m)) = messages.next_if(|(r, _)| *r == route) {
                    run.push(m);
                }
                let sent: Vec<_> = run.iter().map(|m| self.sent_event(m, &route)).collect();
                match run.len() {
                    1 => self.broker().publish(&route, run.pop().expect("one"))?,
                    _ => self.broker().publish_batch(&route, run)?,
                }
                self.emit_sent(sent);
            }
            return Ok(p.result);
        }
        if p.sizes.is_empty() {
            for (route, msg) in p.messages {
                let sent = self.sent_event(&msg, &route);
                self.broker().publish(&route, msg)?;
                self.emit_sent([sent]);
            }
            return Ok(p.result);
        }
        let (client, result, what) = (self.clone(), p.result.clone(), sig.task.clone());
        crate::rt::spawn_local(async move {
            if let Err(e) = client.send_prepared(p).await {
                tracing::error!("Cannot send {what}: {e}");
            }
        });
        Ok(result)
    }
}
