//! Real-time journey triggers, pure: the rule format and its parser ([`parse_rule`]), the
//! incremental per-customer evaluator ([`Evaluator`], with serializable [`State`], time
//! passed in, unless windows as deadlines the caller polls), replays over history, and
//! Standard Webhooks signatures ([`sign`]). No IO and no threads: the app persists state,
//! drives time and performs the actions. The format and semantics are in docs/triggers.md.

pub mod eval;
pub mod rule;
pub mod sign;

pub use eval::{event_key, firing_id, replay, At, Evaluator, Firing, Obs, Poll, State};
pub use rule::{
    parse_rule, rule_from_json, Action, CustomerFilter, Filter, Literal, Rule, RuleError, Span,
    Step, Unless,
};
