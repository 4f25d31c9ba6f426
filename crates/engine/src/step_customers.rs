//! The customers behind one element of a process map: those with a case that has the step,
//! or the directly-follows transition `step → next` (consecutive events of a case, as the
//! map counts them). This is how a map's node or edge leads to the customers who took it.
//!
//! Customers are listed in customer-id order, a page at a time; `total` counts them all. A
//! step the data never has is no error: nobody took it.

use crate::case::Prepared;
use omnitrail_model::CustomerId;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StepCustomersOptions {
    pub step: String,
    /// With it: the transition `step → next` instead of the step alone.
    pub next: Option<String>,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StepCustomers {
    pub step: String,
    pub next: Option<String>,
    /// Every customer who took it.
    pub total: u64,
    /// Cases that took it (a customer may have several).
    pub cases: u64,
    pub offset: usize,
    pub limit: usize,
    /// The requested page, in customer-id order.
    pub customers: Vec<CustomerId>,
}

#[derive(Default)]
struct Partial {
    cases: u64,
    last_customer: u64,
    customers: Vec<CustomerId>,
}

/// The customers whose cases have `options.step` (or the transition to `options.next`).
pub fn step_customers(prepared: &Prepared<'_>, options: &StepCustomersOptions) -> StepCustomers {
    let code = |name: &str| {
        prepared
            .step_names()
            .binary_search_by(|s| s.as_str().cmp(name))
            .ok()
            .map(|i| i as u32)
    };
    let from = code(&options.step);
    let to = options.next.as_deref().map(code);
    let mut found = match (from, to) {
        (None, _) | (_, Some(None)) => Partial::default(),
        (Some(a), to) => prepared.fold_cases(
            Partial::default,
            |acc, case| {
                let took = match to {
                    Some(Some(b)) => case.steps.windows(2).any(|w| w[0] == a && w[1] == b),
                    _ => case.steps.contains(&a),
                };
                if !took {
                    return;
                }
                acc.cases += 1;
                let stamp = Prepared::customer_stamp(case);
                if acc.last_customer != stamp {
                    acc.last_customer = stamp;
                    acc.customers.push(case.customer);
                }
            },
            |mut a, b| {
                a.cases += b.cases;
                a.customers.extend(b.customers);
                a
            },
        ),
    };
    // After identity merges a partition holds customers in its own order; ids are the
    // stable order to page by.
    found.customers.sort_unstable();
    let total = found.customers.len() as u64;
    let customers = found
        .customers
        .into_iter()
        .skip(options.offset)
        .take(options.limit)
        .collect();
    StepCustomers {
        step: options.step.clone(),
        next: options.next.clone(),
        total,
        cases: found.cases,
        offset: options.offset,
        limit: options.limit,
        customers,
    }
}
