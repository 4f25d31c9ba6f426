//! The simulation of one customer's period: acquisition, onboarding, then a life of bills,
//! sessions, issues and loyalty acts, with the planted friction of docs/demo-data.md.
//!
//! Time only moves forward (`now`), so events come out in order. An episode starts at least
//! [`EPISODE_GAP`] after the previous one ended, which keeps every planted follow-up window
//! (≤ 3 h) free of unrelated events, so the planted rates can be measured exactly.

use crate::catalog::{Department, Topic};
use crate::person::{Person, PLANS};
use crate::persona::Habits;
use crate::pick;
use omnitrail_model::{Channel, Event, Identifier, Timestamp, Value};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const SEC: i64 = 1_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// The least time between two episodes of one customer.
const EPISODE_GAP: i64 = 4 * HOUR;
const BILL_CYCLE: i64 = 30 * DAY;
const CONTRACT_TERM: i64 = 182 * DAY;

/// The planted rates; docs/demo-data.md states them and the tests measure them.
mod rate {
    /// (a) Share of mobile-app login attempts that fail on iOS, and everywhere else.
    pub const IOS_APP_LOGIN_FAILURE: f64 = 0.35;
    pub const LOGIN_FAILURE: f64 = 0.05;
    /// (a) Share of failed logins the customer follows with a phone call within the hour.
    pub const CALL_AFTER_LOGIN_FAILURE: f64 = 0.5;
    /// (b) Share of chatbot questions that fail: billing, and the FAQ topics.
    pub const BOT_BILLING_FAILURE: f64 = 0.70;
    pub const BOT_FAQ_FAILURE: f64 = 0.15;
    /// (b) Median hold of calls that leave the chatbot (transfer queue) and of all others.
    pub const BOT_TRANSFER_HOLD_S: f64 = 720.0;
    pub const HOLD_S: f64 = 90.0;
    /// (c) Share of web payment attempts that fail.
    pub const WEB_PAYMENT_FAILURE: f64 = 0.12;
    /// (c) Share of web payment failures followed by a social complaint 20–180 minutes later.
    pub const COMPLAINT_AFTER_PAYMENT_FAILURE: f64 = 0.25;
    /// (c) Share of social complaints the company answers with a phone callback.
    pub const CALLBACK_AFTER_COMPLAINT: f64 = 0.5;
    /// (d) Share of assisted contacts left unresolved, so the customer contacts again 1–5 days later.
    pub const REPEAT_CONTACT: f64 = 0.17;
    /// (e) Shares of onboarding customers who skip profile completion, or email verification.
    pub const SKIP_PROFILE: f64 = 0.12;
    pub const SKIP_EMAIL_VERIFICATION: f64 = 0.08;
    /// Share of customers who go quiet for 60–120 days and then come back.
    pub const DORMANT: f64 = 0.10;
}

/// An assisted contact before its outcome is drawn; `ticket` is set for follow-ups.
struct Contact {
    topic: Topic,
    department: Department,
    ticket: Option<String>,
    wait: f64,
    duration: f64,
    /// Sentiment before the outcome's effect.
    mood: f64,
}

/// Something due on the customer's agenda.
enum Task {
    /// An episode the customer starts on their own.
    Own,
    Bill,
    Pay {
        amount: f64,
    },
    Renewal,
    /// Contact again about an unresolved ticket (pattern d).
    Repeat {
        topic: Topic,
        ticket: String,
    },
}

/// Where an online session happens, and on what.
#[derive(Clone, Copy)]
struct Screen {
    app: bool,
    device: &'static str,
    os: &'static str,
    browser: Option<&'static str>,
}

/// Where the customer first bought; renewals happen there too.
#[derive(Clone, Copy, PartialEq)]
enum Buy {
    Web,
    Phone,
    Store,
}

pub(crate) struct Sim<'a> {
    p: &'a Person,
    habits: &'static Habits,
    rng: ChaCha8Rng,
    now: i64,
    end: i64,
    events: Vec<Event>,
    screen: Screen,
    /// Logged in during the current online session.
    signed_in: bool,
    purchased: bool,
    phone_linked: bool,
    social_linked: bool,
    plan: usize,
    buy: Buy,
    tickets: u32,
    orders: u32,
    agenda: Vec<(i64, Task)>,
}

impl<'a> Sim<'a> {
    pub fn new(p: &'a Person, rng: ChaCha8Rng, start: i64, end: i64) -> Sim<'a> {
        Sim {
            p,
            habits: p.persona.habits(),
            rng,
            now: start,
            end,
            events: Vec::with_capacity(64),
            screen: Screen {
                app: false,
                device: "desktop",
                os: p.desktop_os,
                browser: Some(p.desktop_browser),
            },
            signed_in: false,
            purchased: false,
            phone_linked: false,
            social_linked: false,
            plan: p.plan,
            buy: Buy::Web,
            tickets: 0,
            orders: 0,
            agenda: Vec::with_capacity(8),
        }
    }

    /// Runs the whole period and returns the customer's events in time order.
    pub fn run(mut self) -> Vec<Event> {
        // Acquisition starts somewhere in the first 60% of the period, so most customers
        // have months of life after it.
        let span = self.end - self.now;
        if span < DAY {
            return self.events;
        }
        self.now += self.rng.random_range(0..span * 3 / 5);
        self.now = self.daytime(self.now);
        self.acquire();
        if self.purchased {
            self.onboard();
            self.live();
        }
        self.events
    }

    // ---- time and randomness -------------------------------------------------------------

    fn pass(&mut self, lo: i64, hi: i64) {
        self.now += self.rng.random_range(lo..hi);
    }

    /// Moves a time that falls at night to the next morning: people act between 7:00 and 22:00.
    fn daytime(&mut self, t: i64) -> i64 {
        let midnight = t.div_euclid(DAY) * DAY;
        let hour = (t - midnight) / HOUR;
        let morning = 7 * HOUR + self.rng.random_range(0..3 * HOUR);
        match hour {
            0..7 => midnight + morning,
            22.. => midnight + DAY + morning,
            _ => t,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    /// Log-normal seconds with the given median; `spread` is the sigma of the log.
    fn seconds(&mut self, median: f64, spread: f64) -> f64 {
        let u1 = 1.0 - self.rng.random::<f64>();
        let u2: f64 = self.rng.random();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        (median * (spread * z).exp()).round()
    }

    /// A sentiment around `base`, shifted by the persona's mood.
    fn sentiment(&mut self, base: f64) -> Value {
        let noise = self.rng.random_range(-0.2..0.2);
        let s = (base + self.habits.mood + noise).clamp(-1.0, 1.0);
        Value::Num((s * 100.0).round() / 100.0)
    }

    fn agent(&mut self, department: Department) -> Value {
        let (first, count) = department.agents();
        Value::Str(omnitrail_model::format_text!(
            "a-{}",
            first + self.rng.random_range(0..count)
        ))
    }

    fn new_ticket(&mut self) -> String {
        self.tickets += 1;
        format!("T-{}-{}", self.p.index, self.tickets)
    }

    fn new_order(&mut self) -> Value {
        self.orders += 1;
        Value::Str(omnitrail_model::format_text!(
            "O-{}-{}",
            self.p.index,
            self.orders
        ))
    }

    fn price(&self) -> f64 {
        PLANS[self.plan].1
    }

    // ---- building events -----------------------------------------------------------------

    fn event(&self, channel: Channel, activity: &'static str, ids: &[&Identifier]) -> Event {
        let mut e = Event::new(
            Timestamp::from_micros(self.now),
            ids[0].clone(),
            channel,
            activity,
        );
        e.identifiers.reserve_exact(ids.len() - 1);
        for id in &ids[1..] {
            e.add_identifier((*id).clone());
        }
        e
    }

    /// Events past the end of the period are dropped: the period is a window on ongoing lives.
    fn emit(&mut self, e: Event) {
        if e.timestamp.as_micros() < self.end {
            self.events.push(e);
        }
    }

    /// An event of the current online session, with its device context and identifiers:
    /// the cookie or app install id, plus the account once signed in.
    fn on_screen(&self, activity: &'static str) -> Event {
        let p = self.p;
        let (channel, local) = if self.screen.app {
            (Channel::MobileApp, &p.device)
        } else {
            (Channel::Web, &p.anon)
        };
        let e = if self.signed_in {
            self.event(channel, activity, &[local, &p.user])
        } else {
            self.event(channel, activity, &[local])
        };
        let e = e
            .with_property("device", text(self.screen.device))
            .with_property("os", text(self.screen.os));
        match self.screen.browser {
            Some(b) => e.with_property("browser", text(b)),
            None => e,
        }
    }

    /// The traits the company knows about the customer, put on identifying events.
    fn with_traits(&self, e: Event) -> Event {
        e.with_trait("age_band", text(self.p.age_band))
            .with_trait("region", text(self.p.region))
            .with_trait("plan", text(PLANS[self.plan].0))
    }

    /// Starts an online session: in the app, or on the web from desktop, phone or tablet.
    fn open_screen(&mut self, app: bool) {
        let p = self.p;
        self.signed_in = false;
        self.screen = if app {
            Screen {
                app: true,
                device: "mobile",
                os: p.phone_os,
                browser: None,
            }
        } else {
            match pick(&mut self.rng, &[0.55, 0.35, 0.10]) {
                0 => Screen {
                    app: false,
                    device: "desktop",
                    os: p.desktop_os,
                    browser: Some(p.desktop_browser),
                },
                1 => Screen {
                    app: false,
                    device: "mobile",
                    os: p.phone_os,
                    browser: Some(p.phone_browser()),
                },
                _ => Screen {
                    app: false,
                    device: "tablet",
                    os: p.phone_os,
                    browser: Some(p.phone_browser()),
                },
            }
        };
    }

    fn click(&mut self, activity: &'static str) {
        self.pass(10 * SEC, 3 * MIN);
        let e = self.on_screen(activity);
        self.emit(e);
    }

    // ---- acquisition ---------------------------------------------------------------------

    /// Anonymous browsing, then the first purchase on the persona's channel.
    fn acquire(&mut self) {
        self.buy = [Buy::Web, Buy::Phone, Buy::Store][pick(&mut self.rng, &self.habits.purchase)];
        let sessions = match self.buy {
            Buy::Web => self.rng.random_range(1..=3),
            _ => self.rng.random_range(0..=2),
        };
        for s in 0..sessions {
            if s > 0 {
                let gap = self.rng.random_range(DAY..6 * DAY);
                self.now = self.daytime(self.now + gap);
            }
            self.open_screen(false);
            if s == 0 {
                self.click("ad_viewed");
                self.click("ad_clicked");
                self.click("landing_page_viewed");
            }
            self.click("product_viewed");
            for _ in 0..self.rng.random_range(1..=3) {
                let a = [
                    "plan_compared",
                    "review_read",
                    "coverage_checked",
                    "product_viewed",
                ][self.rng.random_range(0..4)];
                self.click(a);
            }
            if self.buy == Buy::Web && self.chance(0.3) {
                self.click("cart_added");
            }
        }
        let gap = self.rng.random_range(HOUR..3 * DAY);
        self.now = self.daytime(self.now + gap);
        match self.buy {
            Buy::Web => {
                while !self.purchased && self.now < self.end {
                    self.web_checkout();
                    if !self.purchased {
                        let gap = self.rng.random_range(DAY..4 * DAY);
                        self.now = self.daytime(self.now + gap);
                    }
                }
            }
            Buy::Phone => self.sales_call(),
            Buy::Store => self.store_purchase(),
        }
    }

    fn web_checkout(&mut self) {
        self.open_screen(false);
        self.click("product_viewed");
        self.click("cart_added");
        self.click("checkout_started");
        let amount = self.price();
        if !self.web_payment(amount) {
            return;
        }
        let p = self.p;
        let order = self.new_order();
        let e = self
            .on_screen("purchase")
            .with_identifier(p.email.clone())
            .with_identifier(p.crm.clone())
            .with_property("value", Value::Num(amount))
            .with_property("order_id", order.clone())
            .with_property("outcome", text("success"));
        let e = self.with_traits(e);
        self.emit(e);
        self.purchased = true;
        self.order_confirmed(amount, order);
    }

    /// A call to the sales line that ends in a purchase: the phone is linked to the CRM record.
    fn sales_call(&mut self) {
        let p = self.p;
        self.call_opening(Topic::Plan, Department::Sales);
        let wait = self.seconds(rate::HOLD_S, 0.6);
        let duration = self.seconds(600.0, 0.4);
        self.now += (wait + duration) as i64 * SEC;
        let amount = self.price();
        let order = self.new_order();
        let agent = self.agent(Department::Sales);
        let e = self
            .event(Channel::Phone, "purchase", &[&p.phone, &p.email, &p.crm])
            .with_property("value", Value::Num(amount))
            .with_property("order_id", order.clone())
            .with_property("agent", agent.clone())
            .with_property("department", text(Department::Sales.as_str()))
            .with_property("outcome", text("success"));
        let e = self.with_traits(e);
        self.emit(e);
        self.purchased = true;
        self.phone_linked = true;
        self.pass(30 * SEC, 3 * MIN);
        let mood = self.sentiment(0.4);
        let e = self
            .event(Channel::Phone, "call_ended", &[&p.phone])
            .with_property("topic", text(Topic::Plan.as_str()))
            .with_property("department", text(Department::Sales.as_str()))
            .with_property("agent", agent)
            .with_property("wait_seconds", Value::Num(wait))
            .with_property("duration_seconds", Value::Num(duration))
            .with_property("outcome", text("success"))
            .with_property("sentiment", mood);
        self.emit(e);
        self.order_confirmed(amount, order);
    }

    /// A store consultation that ends in a purchase; the clerk opens the CRM record.
    fn store_purchase(&mut self) {
        let p = self.p;
        let agent = self.agent(Department::Store);
        let e = self
            .event(Channel::Store, "store_visited", &[&p.crm])
            .with_property("agent", agent.clone())
            .with_property("department", text(Department::Store.as_str()));
        self.emit(e);
        self.pass(10 * MIN, 40 * MIN);
        let amount = self.price();
        let order = self.new_order();
        let e = self
            .event(Channel::Store, "purchase", &[&p.crm, &p.email])
            .with_property("value", Value::Num(amount))
            .with_property("order_id", order.clone())
            .with_property("agent", agent)
            .with_property("department", text(Department::Store.as_str()))
            .with_property("outcome", text("success"));
        let e = self.with_traits(e);
        self.emit(e);
        self.purchased = true;
        self.order_confirmed(amount, order);
    }

    fn order_confirmed(&mut self, amount: f64, order: Value) {
        self.pass(MIN, 10 * MIN);
        let e = self
            .event(Channel::Email, "order_confirmed", &[&self.p.email])
            .with_property("value", Value::Num(amount))
            .with_property("order_id", order);
        self.emit(e);
    }

    // ---- onboarding ------------------------------------------------------------------------

    /// The designed onboarding journey, with planted skipped steps (pattern e). App users
    /// install the app first and log in there for the first time, which links the install id.
    fn onboard(&mut self) {
        let p = self.p;
        self.pass(10 * MIN, 2 * DAY);
        self.now = self.daytime(self.now);
        if p.app_user {
            self.open_screen(true);
            self.click("app_installed");
        }
        // The account is made on the web, which ties the browsing cookie to the person.
        self.open_screen(false);
        self.pass(MIN, 10 * MIN);
        let e = self
            .on_screen("account_created")
            .with_identifier(p.email.clone())
            .with_identifier(p.user.clone())
            .with_trait("age_band", text(p.age_band))
            .with_trait("region", text(p.region));
        self.emit(e);
        self.signed_in = true;
        let skip = pick(
            &mut self.rng,
            &[
                rate::SKIP_PROFILE,
                rate::SKIP_EMAIL_VERIFICATION,
                1.0 - rate::SKIP_PROFILE - rate::SKIP_EMAIL_VERIFICATION,
            ],
        );
        if skip != 1 {
            self.pass(2 * MIN, HOUR);
            let e = self.event(Channel::Email, "email_verified", &[&p.email]);
            self.emit(e);
        }
        if skip != 0 {
            self.pass(5 * MIN, DAY);
            self.click("profile_completed");
        }
        self.pass(HOUR, 2 * DAY);
        self.now = self.daytime(self.now);
        self.open_screen(p.app_user);
        self.signed_in = true;
        let e = self
            .on_screen("first_login")
            .with_property("outcome", text("success"));
        self.emit(e);
        self.pass(2 * MIN, 15 * MIN);
        let e = self
            .on_screen("tutorial_completed")
            .with_property("outcome", text("success"));
        self.emit(e);
    }

    // ---- the rest of the period ------------------------------------------------------------

    fn live(&mut self) {
        let first_bill = self.now + self.rng.random_range(20 * DAY..BILL_CYCLE);
        self.agenda.push((first_bill, Task::Bill));
        self.agenda.push((self.now + CONTRACT_TERM, Task::Renewal));
        let gap = self.own_gap();
        self.agenda.push((self.now + gap, Task::Own));
        let mut dormancy = self.dormancy();
        let mut winback = false;
        while self.now < self.end {
            let next = (0..self.agenda.len())
                .min_by_key(|&i| self.agenda[i].0)
                .expect("the agenda always holds the own-episode task");
            let (due, task) = self.agenda.swap_remove(next);
            let start = self.daytime(due.max(self.now + EPISODE_GAP));
            if let Some((from, length)) = dormancy {
                // Open tickets are followed up first so a break never cuts a ticket short.
                let tickets_open = std::iter::once(&task)
                    .chain(self.agenda.iter().map(|(_, t)| t))
                    .any(|t| matches!(t, Task::Repeat { .. }));
                if start >= from && !tickets_open {
                    dormancy = None;
                    winback = true;
                    self.agenda.push((due, task));
                    self.go_quiet(start + length);
                    continue;
                }
            }
            self.now = start;
            match task {
                Task::Own => {
                    if std::mem::take(&mut winback) {
                        self.marketing_email("winback");
                    } else {
                        self.own_episode();
                    }
                    let gap = self.own_gap();
                    self.agenda.push((self.now + gap, Task::Own));
                }
                Task::Bill => {
                    if let Some(amount) = self.bill() {
                        let pay_at = self.now + self.rng.random_range(12 * HOUR..5 * DAY);
                        self.agenda.push((pay_at, Task::Pay { amount }));
                    }
                    self.agenda.push((due + BILL_CYCLE, Task::Bill));
                }
                Task::Pay { amount } => self.pay(amount),
                Task::Renewal => {
                    self.renewal();
                    self.agenda.push((due + CONTRACT_TERM, Task::Renewal));
                }
                Task::Repeat { topic, ticket } => self.repeat_contact(topic, ticket),
            }
        }
    }

    /// When the customer's break starts and how long it lasts, if they are one of the dormant
    /// ones and the period has room for a break with activity on both sides.
    fn dormancy(&mut self) -> Option<(i64, i64)> {
        if !self.chance(rate::DORMANT) {
            return None;
        }
        let length = self.rng.random_range(60 * DAY..120 * DAY);
        let earliest = self.now + 14 * DAY;
        let latest = self.end - length - 14 * DAY;
        (earliest < latest).then(|| (self.rng.random_range(earliest..latest), length))
    }

    /// Skips everything due in the break (bills are paused, nothing is paid); the recurring
    /// tasks resume after it, starting with a win-back email.
    fn go_quiet(&mut self, until: i64) {
        let after = |mut due: i64, period: i64| {
            while due < until {
                due += period;
            }
            due
        };
        let mut resumed = Vec::with_capacity(self.agenda.len());
        for (due, task) in self.agenda.drain(..) {
            match task {
                Task::Bill => resumed.push((after(due, BILL_CYCLE), task)),
                Task::Renewal => resumed.push((after(due, CONTRACT_TERM), task)),
                Task::Own => resumed.push((until, task)),
                Task::Pay { .. } | Task::Repeat { .. } => {}
            }
        }
        self.agenda = resumed;
        self.now = until;
    }

    fn own_gap(&mut self) -> i64 {
        let mean = self.habits.episode_gap_days * DAY as f64;
        let u = 1.0 - self.rng.random::<f64>();
        (-mean * u.ln()) as i64
    }

    fn own_episode(&mut self) {
        match pick(&mut self.rng, &self.habits.episodes) {
            0 => self.usage_session(),
            1 => self.marketing(),
            2 => self.support(),
            _ => self.loyalty(),
        }
    }

    // ---- usage -----------------------------------------------------------------------------

    /// Signs in on the current screen. Every failed attempt is followed, with probability
    /// [`rate::CALL_AFTER_LOGIN_FAILURE`], by a call about the login (pattern a).
    fn log_in(&mut self) -> bool {
        let fail = if self.screen.app && self.p.is_ios() {
            rate::IOS_APP_LOGIN_FAILURE
        } else {
            rate::LOGIN_FAILURE
        };
        for attempt in 0..3 {
            self.pass(5 * SEC, 40 * SEC);
            if !self.chance(fail) {
                self.signed_in = true;
                let e = self
                    .on_screen("login")
                    .with_property("outcome", text("success"));
                self.emit(e);
                return true;
            }
            let e = self
                .on_screen("login_failed")
                .with_property("outcome", text("failure"));
            self.emit(e);
            if self.chance(rate::CALL_AFTER_LOGIN_FAILURE) {
                self.pass(2 * MIN, 45 * MIN);
                self.agent_call(Topic::Login, rate::HOLD_S, None);
                return false;
            }
            if attempt == 2 {
                self.pass(MIN, 5 * MIN);
                let e = self
                    .event(Channel::Email, "password_reset", &[&self.p.email])
                    .with_property("outcome", text("success"));
                self.emit(e);
            }
        }
        false
    }

    fn usage_session(&mut self) {
        let app = self.p.app_user && self.chance(0.7);
        self.open_screen(app);
        if !self.log_in() {
            return;
        }
        for _ in 0..self.rng.random_range(1..=3) {
            let a = [
                "usage_checked",
                "feature_used",
                "bill_viewed",
                "product_viewed",
                "faq_viewed",
            ][pick(&mut self.rng, &[0.35, 0.30, 0.15, 0.10, 0.10])];
            self.click(a);
        }
    }

    // ---- marketing -------------------------------------------------------------------------

    fn marketing(&mut self) {
        match pick(&mut self.rng, &[0.45, 0.25, 0.15, 0.15]) {
            1 if self.p.app_user => {
                let e = self.event(Channel::Push, "push_opened", &[&self.p.device]);
                self.emit(e);
                if self.chance(0.4) {
                    self.open_screen(true);
                    self.signed_in = true;
                    self.click("feature_used");
                }
            }
            2 if self.phone_linked => {
                let e = self
                    .event(Channel::Sms, "sms_received", &[&self.p.phone])
                    .with_property("topic", text("usage_alert"));
                self.emit(e);
            }
            3 => {
                self.open_screen(false);
                self.click("ad_viewed");
                if self.chance(0.3) {
                    self.click("ad_clicked");
                    self.click("landing_page_viewed");
                    self.click("product_viewed");
                }
            }
            _ => self.marketing_email("promo"),
        }
    }

    /// A campaign email; some readers click through and a few change plan.
    fn marketing_email(&mut self, campaign: &str) {
        let e = self
            .event(Channel::Email, "email_opened", &[&self.p.email])
            .with_property("campaign", text(campaign));
        self.emit(e);
        if !self.chance(0.35) {
            return;
        }
        self.open_screen(false);
        self.click("landing_page_viewed");
        self.click("product_viewed");
        if self.chance(0.25) {
            self.click("plan_compared");
            let old = self.plan;
            self.plan = (old + 1 + self.rng.random_range(0..2)) % PLANS.len();
            self.signed_in = true;
            self.pass(MIN, 5 * MIN);
            let e = self
                .on_screen("plan_changed")
                .with_property("value", Value::Num(self.price()))
                .with_property("outcome", text("success"))
                .with_trait("plan", text(PLANS[self.plan].0));
            self.emit(e);
        }
    }

    // ---- bills and payments ----------------------------------------------------------------

    /// Issues the monthly bill; returns the amount if the customer pays it by hand.
    fn bill(&mut self) -> Option<f64> {
        let p = self.p;
        let extras = (self.rng.random_range(0.0..12.0_f64) * 100.0).round() / 100.0;
        let amount = self.price() + extras;
        let e = if p.paper_bill {
            self.event(Channel::Mail, "bill_issued", &[&p.crm])
        } else {
            self.event(Channel::Email, "bill_issued", &[&p.email])
        };
        self.emit(e.with_property("value", Value::Num(amount)));
        let autopay = pick(&mut self.rng, &self.habits.pay) == 0;
        (!autopay).then_some(amount)
    }

    fn pay(&mut self, amount: f64) {
        let p = self.p;
        let paid = |e: Event| {
            e.with_property("value", Value::Num(amount))
                .with_property("outcome", text("success"))
        };
        // Autopay was decided at billing; renormalize over the manual ways.
        let mut manual = self.habits.pay;
        manual[0] = 0.0;
        match pick(&mut self.rng, &manual) {
            way @ (1 | 2) => {
                let app = way == 2 && p.app_user;
                self.open_screen(app);
                if !self.log_in() {
                    return;
                }
                if self.chance(0.5) {
                    self.click("bill_viewed");
                }
                if !app && !self.web_payment(amount) {
                    return;
                }
                self.pass(20 * SEC, 2 * MIN);
                let e = paid(self.on_screen("bill_paid"));
                self.emit(e);
            }
            3 => {
                self.call_opening(Topic::Billing, Department::Billing);
                self.pass(MIN, 3 * MIN);
                // Self-service: the call ends in the IVR, so no agent and no `call_ended`.
                let e = paid(self.event(Channel::Ivr, "bill_paid", &[&p.phone]));
                self.emit(e);
            }
            _ => {
                let agent = self.agent(Department::Store);
                let e = paid(self.event(Channel::Store, "bill_paid", &[&p.crm]))
                    .with_property("agent", agent)
                    .with_property("department", text(Department::Store.as_str()));
                self.emit(e);
            }
        }
    }

    /// Web card payment attempts. A failure may send the customer to social media to complain
    /// (pattern c); otherwise they retry or give up. Returns whether the payment went through.
    fn web_payment(&mut self, amount: f64) -> bool {
        loop {
            self.pass(20 * SEC, 2 * MIN);
            if !self.chance(rate::WEB_PAYMENT_FAILURE) {
                return true;
            }
            let e = self
                .on_screen("payment_failed")
                .with_property("value", Value::Num(amount))
                .with_property("outcome", text("failure"));
            self.emit(e);
            if self.chance(rate::COMPLAINT_AFTER_PAYMENT_FAILURE) {
                self.pass(20 * MIN, 180 * MIN);
                self.complaint(Topic::Payment);
                return false;
            }
            if !self.chance(0.6) {
                return false;
            }
        }
    }

    fn renewal(&mut self) {
        let p = self.p;
        let amount = self.price() * 6.0;
        let order = self.new_order();
        let e = match self.buy {
            Buy::Web => {
                let app = p.app_user && self.chance(0.5);
                self.open_screen(app);
                self.signed_in = true;
                self.on_screen("renewal")
            }
            Buy::Phone => self.event(Channel::Phone, "renewal", &[&p.phone]),
            Buy::Store => self.event(Channel::Store, "renewal", &[&p.crm]),
        };
        let e = e
            .with_property("value", Value::Num(amount))
            .with_property("order_id", order)
            .with_property("outcome", text("success"))
            .with_trait("plan", text(PLANS[self.plan].0));
        self.emit(e);
    }

    // ---- support ---------------------------------------------------------------------------

    fn support(&mut self) {
        let weights = Topic::SPONTANEOUS.map(|t| t.1);
        let topic = Topic::SPONTANEOUS[pick(&mut self.rng, &weights)].0;
        match pick(&mut self.rng, &self.habits.support) {
            0 => self.chatbot(topic),
            1 => self.chat(topic, None),
            2 => self.agent_call(topic, rate::HOLD_S, None),
            3 => self.store_service(topic, None),
            _ => self.complaint(topic),
        }
    }

    /// The chatbot answers FAQs but fails billing questions; those who leave it for the
    /// phone land in the slow transfer queue (pattern b).
    fn chatbot(&mut self, topic: Topic) {
        let p = self.p;
        self.open_screen(false);
        if self.chance(0.5) {
            let e = self
                .on_screen("faq_viewed")
                .with_property("topic", text(topic.as_str()));
            self.emit(e);
        }
        self.pass(30 * SEC, 3 * MIN);
        let fail = if topic == Topic::Billing {
            rate::BOT_BILLING_FAILURE
        } else {
            rate::BOT_FAQ_FAILURE
        };
        let failed = self.chance(fail);
        let duration = self.seconds(90.0, 0.5);
        let mood = self.sentiment(if failed { -0.45 } else { 0.35 });
        let e = self
            .event(Channel::Chatbot, "chatbot_question", &[&p.anon])
            .with_property("topic", text(topic.as_str()))
            .with_property("duration_seconds", Value::Num(duration))
            .with_property("outcome", text(if failed { "failure" } else { "success" }))
            .with_property("sentiment", mood);
        self.emit(e);
        if !failed {
            return;
        }
        self.now += duration as i64 * SEC;
        match pick(&mut self.rng, &[0.6, 0.2, 0.2]) {
            0 => {
                self.pass(2 * MIN, 30 * MIN);
                self.agent_call(topic, rate::BOT_TRANSFER_HOLD_S, None);
            }
            1 => {
                self.pass(MIN, 10 * MIN);
                self.chat(topic, None);
            }
            _ => {}
        }
    }

    /// `call_started` and the IVR menu; the IVR matches the caller to the CRM record the
    /// first time (the event that links phone, email and crm_id).
    fn call_opening(&mut self, topic: Topic, department: Department) {
        let p = self.p;
        let e = self
            .event(Channel::Phone, "call_started", &[&p.phone])
            .with_property("topic", text(topic.as_str()))
            .with_property("department", text(department.as_str()));
        self.emit(e);
        self.pass(5 * SEC, 20 * SEC);
        let duration = self.seconds(45.0, 0.3);
        let e = self
            .event(Channel::Ivr, "ivr_menu", &[&p.phone])
            .with_property("topic", text(topic.as_str()))
            .with_property("duration_seconds", Value::Num(duration))
            .with_property("outcome", text("success"));
        self.emit(e);
        self.now += duration as i64 * SEC;
        if self.purchased && !self.phone_linked {
            let e = self.event(
                Channel::Ivr,
                "caller_identified",
                &[&p.phone, &p.email, &p.crm],
            );
            let e = self.with_traits(e);
            self.emit(e);
            self.phone_linked = true;
        }
    }

    /// A call answered by an agent after `hold` seconds (median).
    fn agent_call(&mut self, topic: Topic, hold: f64, ticket: Option<String>) {
        let p = self.p;
        let department = topic.department();
        self.call_opening(topic, department);
        let wait = self.seconds(hold, if hold > rate::HOLD_S { 0.35 } else { 0.6 });
        let duration = self.seconds(300.0, 0.5);
        self.now += (wait + duration) as i64 * SEC;
        let e = self.event(Channel::Phone, "call_ended", &[&p.phone]);
        let contact = Contact {
            topic,
            department,
            ticket,
            wait,
            duration,
            // Long holds sour the call.
            mood: -(wait / 1200.0).min(0.5),
        };
        self.assisted(e, contact);
    }

    fn chat(&mut self, topic: Topic, ticket: Option<String>) {
        let p = self.p;
        let department = topic.department();
        let e = self
            .event(Channel::Chat, "chat_started", &[&p.anon, &p.email])
            .with_property("topic", text(topic.as_str()))
            .with_property("department", text(department.as_str()));
        self.emit(e);
        let wait = self.seconds(40.0, 0.5);
        let duration = self.seconds(420.0, 0.5);
        self.now += (wait + duration) as i64 * SEC;
        let e = self.event(Channel::Chat, "chat_ended", &[&p.anon, &p.email]);
        let contact = Contact {
            topic,
            department,
            ticket,
            wait,
            duration,
            mood: 0.0,
        };
        self.assisted(e, contact);
    }

    /// A visit to the store's service desk; the event is stamped with the arrival time.
    fn store_service(&mut self, topic: Topic, ticket: Option<String>) {
        let wait = self.seconds(240.0, 0.5);
        let duration = self.seconds(900.0, 0.4);
        let e = self.event(Channel::Store, "store_service_visit", &[&self.p.crm]);
        self.now += (wait + duration) as i64 * SEC;
        let contact = Contact {
            topic,
            department: Department::Store,
            ticket,
            wait,
            duration,
            mood: 0.1,
        };
        self.assisted(e, contact);
    }

    /// Finishes an assisted contact (the event gets wait, handle time, agent, ticket and
    /// outcome) and handles what follows: a ticket and a repeat contact if it stayed
    /// unresolved (pattern d), a closing email when a follow-up resolves it, maybe a survey.
    fn assisted(&mut self, e: Event, contact: Contact) {
        let p = self.p;
        let Contact {
            topic,
            department,
            ticket,
            wait,
            duration,
            mood,
        } = contact;
        let resolved = !self.chance(rate::REPEAT_CONTACT);
        let follow_up = ticket.is_some();
        let ticket = ticket.unwrap_or_else(|| self.new_ticket());
        let agent = self.agent(department);
        let mood = self.sentiment(mood + if resolved { 0.3 } else { -0.4 });
        let e = e
            .with_property("topic", text(topic.as_str()))
            .with_property("department", text(department.as_str()))
            .with_property("agent", agent)
            .with_property("wait_seconds", Value::Num(wait))
            .with_property("duration_seconds", Value::Num(duration))
            .with_property("ticket_id", text(&ticket))
            .with_property(
                "outcome",
                text(if resolved { "resolved" } else { "escalated" }),
            )
            .with_property("sentiment", mood);
        self.emit(e);
        let notice = |sim: &mut Sim, activity: &'static str| {
            sim.pass(MIN, 20 * MIN);
            let e = sim
                .event(Channel::Email, activity, &[&p.email])
                .with_property("ticket_id", text(&ticket))
                .with_property("topic", text(topic.as_str()));
            sim.emit(e);
        };
        if !resolved {
            if !follow_up {
                notice(self, "ticket_opened");
            }
            let due = self.now + self.rng.random_range(DAY..4 * DAY);
            self.agenda.push((due, Task::Repeat { topic, ticket }));
            return;
        }
        if follow_up {
            notice(self, "ticket_resolved");
        }
        if self.chance(0.3) {
            self.pass(HOUR, 6 * HOUR);
            let score = 1 + pick(&mut self.rng, &[0.05, 0.10, 0.25, 0.35, 0.25]) as u8;
            let mood = self.sentiment(f64::from(score) / 2.0 - 1.6);
            let e = self
                .event(Channel::Email, "survey_answered", &[&p.email])
                .with_property("topic", text(topic.as_str()))
                .with_property("score", Value::Num(f64::from(score)))
                .with_property("sentiment", mood);
            self.emit(e);
        }
    }

    /// Contacts again about an unresolved ticket, on an assisted channel the persona uses.
    fn repeat_contact(&mut self, topic: Topic, ticket: String) {
        let s = &self.habits.support;
        match pick(&mut self.rng, &[s[1], s[2], s[3]]) {
            0 => self.chat(topic, Some(ticket)),
            1 => self.agent_call(topic, rate::HOLD_S, Some(ticket)),
            _ => self.store_service(topic, Some(ticket)),
        }
    }

    /// A public complaint under the social handle alone; the social care team replies and
    /// links the handle to the customer's record, and sometimes a callback follows.
    fn complaint(&mut self, topic: Topic) {
        let p = self.p;
        let mood = self.sentiment(-0.65);
        let e = self
            .event(Channel::Social, "complaint", &[&p.social])
            .with_property("topic", text(topic.as_str()))
            .with_property("sentiment", mood);
        self.emit(e);
        self.pass(15 * MIN, 2 * HOUR);
        let ticket = self.new_ticket();
        // Before the first purchase there is no CRM record yet; the team asks for the email.
        let record = if self.purchased { &p.crm } else { &p.email };
        let agent = self.agent(Department::SocialCare);
        let e = self
            .event(Channel::Social, "social_reply", &[&p.social, record])
            .with_property("topic", text(topic.as_str()))
            .with_property("department", text(Department::SocialCare.as_str()))
            .with_property("agent", agent)
            .with_property("ticket_id", text(&ticket));
        self.emit(e);
        self.social_linked = true;
        if !self.chance(rate::CALLBACK_AFTER_COMPLAINT) {
            return;
        }
        self.pass(HOUR, 6 * HOUR);
        let duration = self.seconds(360.0, 0.4);
        let e = self.event(Channel::Phone, "callback_completed", &[&p.phone, record]);
        self.phone_linked = true;
        let contact = Contact {
            topic,
            department: topic.department(),
            ticket: Some(ticket),
            wait: 0.0,
            duration,
            mood: 0.2,
        };
        self.assisted(e, contact);
    }

    // ---- loyalty ---------------------------------------------------------------------------

    fn loyalty(&mut self) {
        let p = self.p;
        let social = if p.persona == crate::Persona::SocialVocal {
            0.5
        } else {
            0.15
        };
        match pick(&mut self.rng, &[0.3, 0.25, 0.2, social]) {
            0 => {
                self.open_screen(false);
                self.signed_in = true;
                let rating = self.rng.random_range(1..=5);
                let mood = self.sentiment(f64::from(rating - 3) / 2.5);
                let e = self
                    .on_screen("review_posted")
                    .with_property("rating", Value::Num(f64::from(rating)))
                    .with_property("sentiment", mood);
                self.emit(e);
            }
            1 => {
                self.open_screen(p.app_user);
                self.signed_in = true;
                self.click("referral_sent");
            }
            2 if p.app_user => {
                self.open_screen(true);
                self.signed_in = true;
                self.click("reward_redeemed");
            }
            2 => {
                let e = self.event(Channel::Store, "reward_redeemed", &[&p.crm]);
                self.emit(e);
            }
            _ => self.social_mention(),
        }
    }

    /// A public post; the first one gets a reply that links the handle to the customer.
    fn social_mention(&mut self) {
        let p = self.p;
        let mood = self.sentiment(0.3);
        let e = self
            .event(Channel::Social, "social_mention", &[&p.social])
            .with_property("sentiment", mood);
        self.emit(e);
        if self.social_linked {
            return;
        }
        self.pass(15 * MIN, 3 * HOUR);
        let agent = self.agent(Department::SocialCare);
        let e = self
            .event(Channel::Social, "social_reply", &[&p.social, &p.crm])
            .with_property("department", text(Department::SocialCare.as_str()))
            .with_property("agent", agent);
        self.emit(e);
        self.social_linked = true;
    }
}

fn text(s: &str) -> Value {
    Value::Str(s.into())
}
