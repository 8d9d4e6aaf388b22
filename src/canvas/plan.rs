//! Lowering a signature into what a producer sends (`celery/canvas.py`: `freeze`,
//! `_chain.prepare_steps`, `group._apply_tasks`, `_chord.run`): ids frozen first, so the caller
//! knows every result id before anything is sent; then plain task signatures whose `options`
//! hold everything their message needs.

use serde_json::{json, Value};

use crate::protocol::{Signature, SubtaskType};

/// What the caller of `sig.apply_async(args, ...)` adds to a signature. Unset fields are read
/// from the signature's own `options` (a chain step or chord body carries them there).
#[derive(Debug, Clone, Default)]
pub struct Apply {
    /// Arguments prepended to the signature's own (unless it is immutable): a parent's result.
    pub partial: Vec<Value>,
    /// The task whose outcome sends this.
    pub parent_id: Option<String>,
    /// The workflow's first task.
    pub root_id: Option<String>,
    /// Membership of a group: its id and this member's place.
    pub group: Option<(String, i64)>,
    /// The chord body to call once the group this belongs to is done.
    pub chord: Option<Signature>,
    /// Steps still to run after this one, next step last (Celery's reversed `chain`).
    pub chain: Option<Vec<Signature>>,
    /// The caller's reply queue, written into every signature frozen here that has none (as
    /// Celery's `freeze` writes `app.thread_oid`): an rpc:// result of a chain's last step or a
    /// chord's body, sent by a worker, still reaches the caller.
    pub reply_to: Option<String>,
}

impl Apply {
    /// This, with what it leaves unset taken from `sig.options`.
    fn or_options_of(&self, sig: &Signature) -> Apply {
        let o = &sig.options;
        let text = |k: &str| o.get(k).and_then(Value::as_str).map(str::to_owned);
        let group = match (text("group_id"), o.get("group_index").and_then(Value::as_i64)) {
            (Some(g), Some(i)) => Some((g, i)),
            _ => None,
        };
        Apply {
            partial: self.partial.clone(),
            parent_id: self.parent_id.clone().or_else(|| text("parent_id")),
            root_id: self.root_id.clone().or_else(|| text("root_id")),
            group: self.group.clone().or(group),
            chord: self.chord.clone().or_else(|| parse(o.get("chord"))),
            chain: self.chain.clone().or_else(|| parse(o.get("chain"))),
            reply_to: self.reply_to.clone(),
        }
    }
}

fn parse<T: serde::de::DeserializeOwned>(v: Option<&Value>) -> Option<T> {
    v.filter(|v| !v.is_null()).and_then(|v| serde_json::from_value(v.clone()).ok())
}

/// The result ids of an applied signature, known before it is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frozen {
    /// One task's result (a task, a chain's last step, a chord's body).
    Task(String),
    /// A group's result: its id and its members'.
    Group {
        /// The group id (`GroupResult.id`).
        id: String,
        /// The members' results, in order.
        results: Vec<Frozen>,
    },
}

impl Frozen {
    /// The result id (a group's own id for a group).
    pub fn id(&self) -> &str {
        match self {
            Frozen::Task(id) | Frozen::Group { id, .. } => id,
        }
    }
}

/// One task message of a [`Plan`].
#[derive(Debug, Clone)]
pub struct Send {
    /// The task signature: arguments final, `options` complete (`task_id`, `group_id` and
    /// `group_index`, `parent_id`, `root_id`, the caller's own).
    pub sig: Signature,
    /// The rest of the chain the message carries, next step last (`embed.chain`). Kept out of
    /// `options`: a long chain's rest is large, and the worker hands it on at every hop.
    pub chain: Option<Vec<Signature>>,
    /// The chord body the task counts toward (`embed.chord`).
    pub chord: Option<Signature>,
}

/// What applying a signature amounts to.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Chord sizes to store before any send: header group id and the results it waits for.
    pub chord_sizes: Vec<(String, u64)>,
    /// The task messages to send, in order.
    pub sends: Vec<Send>,
    /// The result ids the caller gets back.
    pub result: Frozen,
}

/// A signature that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanvasError {
    /// A chain with no steps.
    #[error("{0}: a chain with no tasks cannot be applied")]
    EmptyChain(String),
    /// A composite whose nested signatures do not parse.
    #[error("{0}: {1}")]
    Malformed(String, &'static str),
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `options.task_id`, given one if it has none.
fn frozen_id(sig: &mut Signature) -> String {
    match sig.task_id() {
        Some(id) => id.to_owned(),
        None => {
            let id = new_id();
            sig.options.insert("task_id".into(), json!(id));
            id
        }
    }
}

/// A signature read once into a tree, so a 10,000-task chord header is parsed once and its
/// tasks moved, not converted to and from JSON values at every step of the lowering.
enum Node {
    Task(Signature),
    /// `sig` is the group's dict without its tasks.
    Group {
        sig: Signature,
        members: Vec<Node>,
    },
    Chain {
        sig: Signature,
        steps: Vec<Node>,
    },
    Chord {
        sig: Signature,
        header: Box<Node>,
        body: Box<Node>,
    },
}

/// Takes `kwargs[key]` out of `s` as a list of signatures.
fn take_list(s: &mut Signature, key: &str, what: &'static str) -> Result<Vec<Signature>, CanvasError> {
    match s.kwargs.remove(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(v) => serde_json::from_value(v).map_err(|_| CanvasError::Malformed(s.task.clone(), what)),
    }
}

/// Groups in a group are unrolled into it, their members its own (as Celery's `_prepared`
/// does), so a chord counts each of them.
fn unroll(members: Vec<Node>) -> Vec<Node> {
    let mut out = Vec::with_capacity(members.len());
    for m in members {
        match m {
            Node::Group { members, .. } => out.extend(unroll(members)),
            other => out.push(other),
        }
    }
    out
}

fn node(mut s: Signature) -> Result<Node, CanvasError> {
    match s.subtask_type {
        Some(SubtaskType::Group) => {
            let members = take_list(&mut s, "tasks", "a group whose tasks do not parse")?;
            let members = unroll(members.into_iter().map(node).collect::<Result<_, _>>()?);
            Ok(Node::Group { sig: s, members })
        }
        Some(SubtaskType::Chain) => {
            let steps = take_list(&mut s, "tasks", "a chain whose tasks do not parse")?;
            let mut flat = Vec::with_capacity(steps.len());
            for step in steps {
                match node(step)? {
                    Node::Chain { steps, .. } => flat.extend(steps),
                    other => flat.push(other),
                }
            }
            // A group followed by a step is a chord with that step as its body (`prepare_steps`).
            let mut out: Vec<Node> = Vec::with_capacity(flat.len());
            for step in flat.into_iter().rev() {
                match (step, out.pop()) {
                    (Node::Group { sig, members }, Some(next)) => {
                        let header = Box::new(Node::Group { sig, members });
                        let chord = super::chord(Vec::new(), Signature::new("celery.accumulate", Vec::new()));
                        out.push(Node::Chord { sig: chord, header, body: Box::new(next) });
                    }
                    (step, next) => {
                        out.extend(next);
                        out.push(step);
                    }
                }
            }
            out.reverse();
            Ok(Node::Chain { sig: s, steps: out })
        }
        Some(SubtaskType::Chord) => {
            let header = match s.kwargs.remove("header") {
                Some(v @ Value::Object(_)) => {
                    let g: Signature = serde_json::from_value(v)
                        .map_err(|_| CanvasError::Malformed(s.task.clone(), "a chord whose header does not parse"))?;
                    node(g)?
                }
                Some(v) => {
                    let members: Vec<Signature> = serde_json::from_value(v)
                        .map_err(|_| CanvasError::Malformed(s.task.clone(), "a chord whose header does not parse"))?;
                    node(super::group(members))?
                }
                None => node(super::group(Vec::new()))?,
            };
            let header = match header {
                g @ Node::Group { .. } => g,
                one => Node::Group { sig: super::group(Vec::new()), members: vec![one] },
            };
            let body = match s.kwargs.remove("body") {
                Some(v) => serde_json::from_value::<Signature>(v)
                    .map_err(|_| CanvasError::Malformed(s.task.clone(), "a chord whose body does not parse"))?,
                None => return Err(CanvasError::Malformed(s.task.clone(), "a chord without a body")),
            };
            Ok(Node::Chord { sig: s, header: Box::new(header), body: Box::new(node(body)?) })
        }
        None if s.task == "celery.chunks" => match super::expand_chunks(&s) {
            Some(g) => node(g),
            None => Err(CanvasError::Malformed(s.task.clone(), "a chunks signature needs kwargs task, it and n > 0")),
        },
        _ => Ok(Node::Task(s)),
    }
}

impl Node {
    fn sig_mut(&mut self) -> &mut Signature {
        match self {
            Node::Task(s) | Node::Group { sig: s, .. } | Node::Chain { sig: s, .. } | Node::Chord { sig: s, .. } => s,
        }
    }

    /// Gives every node its result id (keeping those it has) and `reply_to`; returns the ids the
    /// caller gets.
    fn freeze(&mut self, reply_to: Option<&str>) -> Frozen {
        if let Some(r) = reply_to {
            self.sig_mut().options.entry("reply_to").or_insert_with(|| json!(r));
        }
        match self {
            Node::Task(s) => Frozen::Task(frozen_id(s)),
            Node::Group { sig, members } => {
                let id = frozen_id(sig);
                Frozen::Group { id, results: members.iter_mut().map(|m| m.freeze(reply_to)).collect() }
            }
            Node::Chain { sig, steps } => {
                let last = steps.iter_mut().map(|m| m.freeze(reply_to)).last();
                last.unwrap_or_else(|| Frozen::Task(frozen_id(sig)))
            }
            Node::Chord { sig, header, body } => {
                header.freeze(reply_to);
                if let Some(id) = sig.task_id().map(str::to_owned) {
                    // `chord(...).apply_async(task_id=x)`: x is the body's id.
                    body.sig_mut().options.entry("task_id").or_insert_with(|| json!(id));
                }
                body.freeze(reply_to)
            }
        }
    }

    /// The ids of an already frozen node.
    fn frozen(&self) -> Frozen {
        match self {
            Node::Task(s) => Frozen::Task(s.task_id().unwrap_or_default().to_owned()),
            Node::Group { sig, members } => Frozen::Group {
                id: sig.task_id().unwrap_or_default().to_owned(),
                results: members.iter().map(Node::frozen).collect(),
            },
            Node::Chain { steps, .. } => steps.last().map_or(Frozen::Task(String::new()), Node::frozen),
            Node::Chord { body, .. } => body.frozen(),
        }
    }

    /// How many results it contributes to a chord it is a header member of (see [`chord_size`]).
    fn size(&self) -> u64 {
        match self {
            Node::Task(_) => 1,
            Node::Group { members, .. } => members.iter().map(Node::size).sum(),
            Node::Chain { steps, .. } => steps.iter().rev().map(Node::size).find(|n| *n > 0).unwrap_or(0),
            Node::Chord { body, .. } => body.size(),
        }
    }

    /// Back to Celery's dict (a chain's rest and a chord's body travel in messages as dicts).
    fn into_sig(self) -> Signature {
        match self {
            Node::Task(s) => s,
            Node::Group { mut sig, members } => {
                let tasks: Vec<Signature> = members.into_iter().map(Node::into_sig).collect();
                sig.kwargs.insert("tasks".into(), json!(tasks));
                sig
            }
            Node::Chain { mut sig, steps } => {
                let tasks: Vec<Signature> = steps.into_iter().map(Node::into_sig).collect();
                sig.kwargs.insert("tasks".into(), json!(tasks));
                sig
            }
            Node::Chord { mut sig, header, body } => {
                sig.kwargs.insert("header".into(), json!(header.into_sig()));
                sig.kwargs.insert("body".into(), json!(body.into_sig()));
                sig
            }
        }
    }
}

/// How many results `sig` contributes to a chord it is a header member of (Celery's
/// `_chord._descend`): a task one, a group the sum of its members, a chain what its last
/// non-empty step contributes, a chord what its body does; chunks count their parts, as the
/// lowering sends them (0 for a signature that does not parse).
pub fn chord_size(sig: &Signature) -> u64 {
    node(sig.clone()).map_or(0, |n| n.size())
}

/// Gives every node of `sig` its result id (`options.task_id`; a chord's header group id in its
/// header's `options.task_id`), keeping the ids it has, and returns the ids the caller gets.
pub fn freeze(sig: &Signature) -> (Signature, Frozen) {
    match node(sig.clone()) {
        Ok(mut n) => {
            let f = n.freeze(None);
            (n.into_sig(), f)
        }
        Err(_) => {
            let mut s = sig.clone();
            let id = frozen_id(&mut s);
            (s, Frozen::Task(id))
        }
    }
}

/// Lowers `sig` applied with `apply` into its [`Plan`].
pub fn lower(sig: &Signature, apply: Apply) -> Result<Plan, CanvasError> {
    let mut n = node(sig.clone())?;
    n.freeze(apply.reply_to.as_deref());
    let mut plan = Plan { chord_sizes: Vec::new(), sends: Vec::new(), result: Frozen::Task(String::new()) };
    plan.result = match n {
        // One task (a chain's next step at every hop): the rest of the chain moved, not copied.
        Node::Task(s) => {
            let send = plain(s, apply);
            let id = send.sig.task_id().expect("frozen").to_owned();
            plan.sends.push(send);
            Frozen::Task(id)
        }
        other => lower_node(other, &apply, &mut plan)?,
    };
    Ok(plan)
}

/// A task signature applied with `a`: its message.
fn plain(mut send: Signature, a: Apply) -> Send {
    frozen_id(&mut send);
    if !send.immutable {
        send.args.splice(0..0, a.partial);
    }
    send.immutable = true;
    let o = &mut send.options;
    for (k, v) in [("parent_id", a.parent_id), ("root_id", a.root_id)] {
        if let Some(v) = v {
            o.insert(k.into(), json!(v));
        }
    }
    if let Some((g, i)) = a.group {
        o.insert("group_id".into(), json!(g));
        o.insert("group_index".into(), json!(i));
    }
    Send { sig: send, chain: a.chain, chord: a.chord }
}

fn lower_node(n: Node, a: &Apply, plan: &mut Plan) -> Result<Frozen, CanvasError> {
    match n {
        Node::Task(s) => {
            let send = plain(s, a.clone());
            let id = send.sig.task_id().expect("frozen").to_owned();
            plan.sends.push(send);
            Ok(Frozen::Task(id))
        }
        Node::Group { sig, members } => {
            let a = a.or_options_of(&sig);
            let id = sig.task_id().map(str::to_owned).unwrap_or_else(new_id);
            if let Some(mut rest) = a.chain.clone().filter(|r| !r.is_empty()) {
                // A group with steps after it is a chord whose body is the next step.
                let next = rest.pop().expect("not empty");
                let mut body = node(next)?;
                body.freeze(a.reply_to.as_deref());
                let chord = super::chord(Vec::new(), Signature::new("celery.accumulate", Vec::new()));
                let c =
                    Node::Chord { sig: chord, header: Box::new(Node::Group { sig, members }), body: Box::new(body) };
                return lower_node(c, &Apply { chain: Some(rest), ..a }, plan);
            }
            if a.chord.is_some() {
                plan.chord_sizes.push((id.clone(), members.iter().map(Node::size).sum()));
            }
            let mut results = Vec::with_capacity(members.len());
            for (i, m) in members.into_iter().enumerate() {
                let member = Apply { group: Some((id.clone(), i as i64)), chain: None, ..a.clone() };
                results.push(lower_node(m, &member, plan)?);
            }
            Ok(Frozen::Group { id, results })
        }
        Node::Chain { sig, steps } => {
            let a = a.or_options_of(&sig);
            let mut steps = steps.into_iter();
            let first = steps.next().ok_or_else(|| CanvasError::EmptyChain(sig.task.clone()))?;
            let rest: Vec<Node> = steps.collect();
            // The chain's result: its last step's, read before the steps become dicts again.
            let last = rest.last().map(Node::frozen);
            let mut own: Vec<Signature> = rest.into_iter().rev().map(Node::into_sig).collect();
            let mut first_apply = Apply { chain: None, ..a.clone() };
            // The chain's membership of a group or chord is its last step's.
            if let Some(last) = own.first_mut() {
                set_membership(last, &a);
                first_apply.group = None;
                first_apply.chord = None;
            }
            let mut carried = a.chain.clone().unwrap_or_default();
            carried.append(&mut own);
            first_apply.chain = Some(carried);
            first_apply.root_id = a.root_id.clone().or_else(|| match &first {
                Node::Task(s) => s.task_id().map(str::to_owned),
                _ => None,
            });
            let head = lower_node(first, &first_apply, plan)?;
            Ok(last.unwrap_or(head))
        }
        Node::Chord { sig, header, body } => {
            let a = a.or_options_of(&sig);
            let result = body.frozen();
            let mut body = body.into_sig();
            // What the chord is applied with goes on with its body: the rest of a chain, the
            // membership of an enclosing group or chord, the parent and root.
            if let Some(chain) = a.chain.as_ref().filter(|c| !c.is_empty()) {
                body.options.insert("chain".into(), json!(chain));
            }
            set_membership(&mut body, &a);
            for (k, v) in [("parent_id", &a.parent_id), ("root_id", &a.root_id)] {
                if let Some(v) = v {
                    body.options.insert(k.into(), json!(v));
                }
            }
            let Node::Group { sig: hsig, members } = *header else { unreachable!("a chord's header is a group") };
            let gid = hsig.task_id().map(str::to_owned).unwrap_or_else(new_id);
            body.options.entry("group_id").or_insert_with(|| json!(gid));
            if members.is_empty() {
                // Nothing will count down to the body: it is called at once with no results.
                let now = Apply { partial: vec![json!([])], reply_to: a.reply_to.clone(), ..Apply::default() };
                lower_node(node(body)?, &now, plan)?;
                return Ok(result);
            }
            let parts = Apply {
                partial: a.partial.clone(),
                parent_id: a.parent_id.clone(),
                root_id: a.root_id.clone(),
                group: None,
                chord: Some(body),
                chain: None,
                reply_to: a.reply_to.clone(),
            };
            lower_node(Node::Group { sig: hsig, members }, &parts, plan)?;
            Ok(result)
        }
    }
}

/// Writes the group membership and chord body of `a` into `sig`'s options.
fn set_membership(sig: &mut Signature, a: &Apply) {
    if let Some((g, i)) = &a.group {
        sig.options.insert("group_id".into(), json!(g));
        sig.options.insert("group_index".into(), json!(i));
    }
    if let Some(c) = &a.chord {
        sig.options.insert("chord".into(), json!(c));
    }
}

#[cfg(test)]
mod tests {
    //! Against `tests/fixtures/celery-5.7/canvas.json`, captured from Python Celery 5.7 by
    //! `scripts/capture_fixtures.py`.

    use serde_json::{json, Value};

    use super::*;
    use crate::canvas::{chain, chord, chunks, group, xmap, xstarmap};

    fn golden() -> Value {
        serde_json::from_str(include_str!("../../tests/fixtures/celery-5.7/canvas.json")).unwrap()
    }

    fn sig(task: &str, args: Value) -> Signature {
        Signature::new(task, args.as_array().unwrap().clone())
    }

    /// The dict without what is generated per run (ids, the client's reply queue).
    fn shape(v: &Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .filter(|(k, _)| {
                        !matches!(k.as_str(), "task_id" | "reply_to" | "parent_id" | "root_id" | "group_index")
                    })
                    .map(|(k, v)| (k.clone(), shape(v)))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
            other => other.clone(),
        }
    }

    #[test]
    fn builders_write_celerys_dicts() {
        let g = golden();
        let want = |k: &str| g["signatures"][k].clone();
        let add = |a: Value| sig("app2.add", a);
        let tsum = sig("app2.tsum", json!([]));
        let ours = [
            ("s", add(json!([1, 2]))),
            (
                "si_set",
                Signature::immutable("app2.add", vec![json!(1), json!(2)]).set("queue", "q").set("countdown", 3),
            ),
            (
                "link",
                add(json!([1, 2])).link_error(Signature::immutable("app2.tsum", vec![json!([0])]))
                    | sig("app2.mul", json!([3])),
            ),
            ("group", group(vec![add(json!([1, 2])), add(json!([3, 4]))])),
            ("chain", chain(vec![add(json!([1, 2])), add(json!([3])), add(json!([4]))])),
            ("chord", chord(vec![add(json!([1, 2])), add(json!([3, 4]))], tsum.clone())),
            ("group_or_task", group(vec![add(json!([1, 2])), add(json!([3, 4]))]) | tsum.clone()),
            ("chord_or_task", chord(vec![add(json!([1, 2]))], tsum.clone()) | sig("app2.mul", json!([2]))),
            ("map", xmap(&tsum, vec![json!([1, 2]), json!([3])])),
            ("starmap", xstarmap(&add(json!([])), vec![json!([1, 2]), json!([3, 4])])),
            ("chunks", chunks(&add(json!([])), vec![json!([1, 2]), json!([3, 4]), json!([5, 6])], 2)),
        ];
        for (name, s) in ours {
            assert_eq!(serde_json::to_value(&s).unwrap(), want(name), "{name}");
        }
    }

    #[test]
    fn a_group_before_a_step_is_sent_as_a_chord_in_the_chain() {
        let g = golden();
        let python = &g["chain_group_task_messages"][0]["body"][2]["chain"];
        let flow = sig("app2.add", json!([1, 2]))
            | group(vec![sig("app2.mul", json!([2])), sig("app2.mul", json!([3]))])
            | sig("app2.tsum", json!([]));
        let plan = lower(&flow, Apply::default()).unwrap();
        assert_eq!(plan.sends.len(), 1, "only the first step is sent");
        let chain = json!(plan.sends[0].chain);
        assert_eq!(shape(&chain), shape(python));
        // The chain's result is the chord body's, frozen in the message.
        assert_eq!(Some(plan.result.id()), chain[0]["kwargs"]["body"]["options"]["task_id"].as_str());
    }

    #[test]
    fn a_chord_sends_its_header_with_group_index_and_body_and_stores_its_size() {
        let body = sig("app2.tsum", json!([]));
        let c = chord(vec![sig("app2.add", json!([1, 2])), sig("app2.add", json!([3, 4]))], body);
        let plan = lower(&c, Apply::default()).unwrap();
        let gid = plan.sends[0].sig.options["group_id"].clone();
        assert_eq!(plan.chord_sizes, vec![(gid.as_str().unwrap().to_owned(), 2)]);
        for (i, s) in plan.sends.iter().enumerate() {
            assert_eq!((&s.sig.options["group_id"], &s.sig.options["group_index"]), (&gid, &json!(i)));
            let chord_body = &json!(s.chord);
            assert_eq!(chord_body["options"]["group_id"], gid, "as Python's body carries it");
            assert_eq!(chord_body["options"]["task_id"].as_str(), Some(plan.result.id()));
        }
    }

    #[test]
    fn chains_carry_the_rest_reversed_and_members_of_chords_count_as_celery_counts() {
        let step = |n: i64| sig("t.add", json!([n]));
        let plan = lower(&chain(vec![sig("t.add", json!([1, 1])), step(2), step(3)]), Apply::default()).unwrap();
        let rest: Vec<Value> = json!(plan.sends[0].chain).as_array().unwrap().clone();
        assert_eq!(rest.iter().map(|s| s["args"].clone()).collect::<Vec<_>>(), vec![json!([3]), json!([2])]);
        assert_eq!(Some(plan.result.id()), rest[0]["options"]["task_id"].as_str());
        // Sizes: a task 1, a group its members, a chain its last step, a chord its body.
        let inner = chord(vec![step(1), step(2)], step(3));
        let header = vec![step(1), group(vec![step(1), step(2)]), chain(vec![step(1), step(2)]), inner];
        let plan = lower(&chord(header, step(0)), Apply::default()).unwrap();
        assert_eq!(plan.chord_sizes.iter().map(|(_, n)| *n).collect::<Vec<_>>(), vec![5, 2]);
        // Partial args go to the first step only; immutable steps keep theirs.
        let a = Apply { partial: vec![json!(7)], ..Apply::default() };
        let plan = lower(&(Signature::immutable("t.add", vec![json!(1), json!(1)]) | step(1)), a).unwrap();
        assert_eq!(plan.sends[0].sig.args, vec![json!(1), json!(1)]);
        assert!(lower(&chain(vec![]), Apply::default()).is_err());
    }
}
