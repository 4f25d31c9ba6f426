//! Who a synthetic customer is: identifiers, traits and devices, drawn once per customer.

use crate::persona::{Persona, AGE_BANDS};
use crate::pick;
use omnitrail_model::{Identifier, IdentifierKind};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const FIRST_NAMES: [&str; 32] = [
    "ana", "ben", "carla", "david", "elena", "farid", "grace", "hugo", "iris", "jamal", "kate",
    "liam", "maya", "noah", "olivia", "pablo", "quinn", "rosa", "sam", "tara", "umar", "vera",
    "will", "xena", "yusuf", "zoe", "leo", "mia", "omar", "nina", "ivan", "lucy",
];
const LAST_NAMES: [&str; 32] = [
    "smith", "garcia", "chen", "muller", "rossi", "kowalski", "nguyen", "okafor", "silva",
    "johnson", "brown", "martin", "lee", "walker", "patel", "kim", "lopez", "dubois", "novak",
    "jensen", "haddad", "tanaka", "ivanova", "moreau", "fischer", "costa", "ahmed", "wright",
    "young", "king", "scott", "green",
];
const REGIONS: [(&str, f64); 5] = [
    ("northeast", 0.22),
    ("southeast", 0.24),
    ("midwest", 0.20),
    ("southwest", 0.14),
    ("west", 0.20),
];

/// The service plans; the plan decides the monthly bill.
pub(crate) const PLANS: [(&str, f64); 3] = [("basic", 29.0), ("standard", 49.0), ("premium", 79.0)];

/// Salts that keep the anonymous and device ids of one customer unrelated.
const ANON_SALT: u64 = 0x0a0a_5eed_0000_0001;
const DEVICE_SALT: u64 = 0x0de7_1ce0_0000_0002;

pub(crate) struct Person {
    pub index: u64,
    pub persona: Persona,
    /// Web cookie id.
    pub anon: Identifier,
    /// Mobile app install id.
    pub device: Identifier,
    pub email: Identifier,
    /// Online account id, given at account creation.
    pub user: Identifier,
    pub phone: Identifier,
    /// CRM record id, given at purchase: the customer's [`crate::SyntheticCustomer::key`].
    pub crm: Identifier,
    /// `social:twitter` or `social:facebook` handle.
    pub social: Identifier,
    pub age_band: &'static str,
    pub region: &'static str,
    /// Index into [`PLANS`].
    pub plan: usize,
    /// `iOS` or `Android`: the OS of the phone for the app and mobile web.
    pub phone_os: &'static str,
    /// `Windows` or `macOS`.
    pub desktop_os: &'static str,
    pub desktop_browser: &'static str,
    pub app_user: bool,
    pub paper_bill: bool,
}

impl Person {
    pub fn draw(seed: u64, index: u64, persona: Persona, rng: &mut ChaCha8Rng) -> Person {
        let habits = persona.habits();
        let first = FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())];
        let last = LAST_NAMES[rng.random_range(0..LAST_NAMES.len())];
        let network = if rng.random_bool(0.6) {
            "twitter"
        } else {
            "facebook"
        };
        // `index + seed·K` is a bijection of the index for a fixed seed and `mix` is one too,
        // so these ids are unique per customer yet look random and change with the seed.
        let spread = index.wrapping_add(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let id = |kind: IdentifierKind, value: String| {
            Identifier::new(kind, &value).expect("generated identifiers are in normal form")
        };
        let age = pick(rng, &habits.ages);
        let region = REGIONS[pick(rng, &REGIONS.map(|r| r.1))].0;
        // Customers of 45 and over lean to the premium plan: a trait with a behavioural echo.
        let plan = pick(rng, &[0.35, 0.40, if age >= 3 { 0.35 } else { 0.25 }]);
        let phone_os = if rng.random_bool(0.45) {
            "iOS"
        } else {
            "Android"
        };
        let mac = rng.random_bool(0.3);
        let desktop_browser = if mac {
            ["Safari", "Chrome"][rng.random_range(0..2)]
        } else {
            ["Chrome", "Edge", "Firefox"][pick(rng, &[0.6, 0.3, 0.1])]
        };
        Person {
            index,
            persona,
            anon: id(
                IdentifierKind::AnonymousId,
                format!("anon-{:016x}", crate::mix(spread ^ ANON_SALT)),
            ),
            device: id(
                IdentifierKind::DeviceId,
                format!("dev-{:016x}", crate::mix(spread ^ DEVICE_SALT)),
            ),
            email: id(
                IdentifierKind::Email,
                format!("{first}.{last}{index}@example.com"),
            ),
            user: id(IdentifierKind::UserId, format!("u-{index:07}")),
            phone: id(IdentifierKind::Phone, format!("+1555{index:07}")),
            crm: id(IdentifierKind::CrmId, format!("crm-{index:08}")),
            social: id(
                IdentifierKind::Social(network.to_string()),
                format!("{first}_{last}{index}"),
            ),
            age_band: AGE_BANDS[age],
            region,
            plan,
            phone_os,
            desktop_os: if mac { "macOS" } else { "Windows" },
            desktop_browser,
            app_user: rng.random_bool(habits.app_user),
            paper_bill: rng.random_bool(habits.paper_bill),
        }
    }

    pub fn is_ios(&self) -> bool {
        self.phone_os == "iOS"
    }

    /// The default mobile browser of the phone's OS.
    pub fn phone_browser(&self) -> &'static str {
        if self.is_ios() {
            "Safari"
        } else {
            "Chrome"
        }
    }
}
