//! The fixed vocabulary of the demo: stages, the designed onboarding journey, support topics.

/// The activity → stage mapping shipped with the demo. Every activity the generator emits is
/// listed exactly once (a test holds both directions), in the stage order of DESIGN.md §2.
pub const DEMO_STAGES_TOML: &str = r#"# Omnitrail demo data: which stage each activity belongs to.
[stages]
awareness = ["ad_viewed", "ad_clicked", "landing_page_viewed", "email_opened", "push_opened"]
consideration = ["product_viewed", "plan_compared", "review_read", "coverage_checked", "cart_added", "store_visited"]
purchase = ["checkout_started", "payment_failed", "purchase", "order_confirmed"]
onboarding = ["app_installed", "account_created", "email_verified", "profile_completed", "first_login", "tutorial_completed"]
usage = ["login", "login_failed", "password_reset", "bill_issued", "bill_viewed", "bill_paid", "usage_checked", "feature_used", "plan_changed", "sms_received"]
support = ["faq_viewed", "chatbot_question", "chat_started", "chat_ended", "call_started", "ivr_menu", "caller_identified", "call_ended", "ticket_opened", "ticket_resolved", "complaint", "social_reply", "callback_completed", "store_service_visit"]
loyalty = ["survey_answered", "review_posted", "referral_sent", "reward_redeemed", "social_mention", "renewal"]
"#;

/// The onboarding journey the company designed (planted pattern e).
const DESIGNED_ONBOARDING: [&str; 5] = [
    "account_created",
    "email_verified",
    "profile_completed",
    "first_login",
    "tutorial_completed",
];

/// The ordered activities of the designed onboarding journey, for conformance demos.
pub fn designed_onboarding_journey() -> &'static [&'static str] {
    &DESIGNED_ONBOARDING
}

/// What a support contact is about; it decides the department that handles it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Topic {
    Billing,
    Network,
    Device,
    Plan,
    Cancellation,
    /// Only reached through failed logins (pattern a).
    Login,
    /// Only reached through failed payments (pattern c).
    Payment,
}

impl Topic {
    /// Topics a customer brings up on their own, with their weights.
    pub const SPONTANEOUS: [(Topic, f64); 5] = [
        (Topic::Billing, 0.35),
        (Topic::Network, 0.25),
        (Topic::Device, 0.20),
        (Topic::Plan, 0.15),
        (Topic::Cancellation, 0.05),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Topic::Billing => "billing",
            Topic::Network => "network",
            Topic::Device => "device",
            Topic::Plan => "plan",
            Topic::Cancellation => "cancellation",
            Topic::Login => "login",
            Topic::Payment => "payment",
        }
    }

    pub fn department(self) -> Department {
        match self {
            Topic::Billing | Topic::Payment => Department::Billing,
            Topic::Network | Topic::Device | Topic::Login => Department::TechSupport,
            Topic::Plan => Department::Sales,
            Topic::Cancellation => Department::Retention,
        }
    }
}

/// Who handles a contact. Each department has its own block of agent ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Department {
    Billing,
    TechSupport,
    Sales,
    Retention,
    SocialCare,
    Store,
}

impl Department {
    pub fn as_str(self) -> &'static str {
        match self {
            Department::Billing => "billing",
            Department::TechSupport => "tech_support",
            Department::Sales => "sales",
            Department::Retention => "retention",
            Department::SocialCare => "social_care",
            Department::Store => "store",
        }
    }

    /// The agents of the department: `a-<first>` to `a-<first + count - 1>`.
    pub fn agents(self) -> (usize, usize) {
        match self {
            Department::Billing => (1, 60),
            Department::TechSupport => (61, 60),
            Department::Sales => (121, 40),
            Department::Retention => (161, 20),
            Department::SocialCare => (181, 20),
            Department::Store => (201, 60),
        }
    }
}
