//! Personas: the hidden behaviour types the generator draws customers from.
//!
//! A persona only shapes probabilities (which channels, how often, which mood); it is never
//! written into the data, so persona discovery has something honest to find.

/// A behaviour type. Hidden: it never appears in properties or traits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Persona {
    /// Web and app for everything; the chatbot first when something goes wrong.
    DigitalSelfServer,
    /// Buys, pays and asks by phone; paper bills; few digital sessions.
    PhoneReliant,
    /// App-heavy, posts on social media, complains in public, refers friends.
    SocialVocal,
    /// Buys, pays and gets help in the store.
    StoreGoer,
    /// Autopay and little else: rare logins, marketing email, the odd contact.
    LowTouch,
}

impl Persona {
    pub const ALL: [Persona; 5] = [
        Persona::DigitalSelfServer,
        Persona::PhoneReliant,
        Persona::SocialVocal,
        Persona::StoreGoer,
        Persona::LowTouch,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Persona::DigitalSelfServer => "digital_self_server",
            Persona::PhoneReliant => "phone_reliant",
            Persona::SocialVocal => "social_vocal",
            Persona::StoreGoer => "store_goer",
            Persona::LowTouch => "low_touch",
        }
    }

    /// The share of generated customers with this persona.
    pub fn share(self) -> f64 {
        self.habits().share
    }

    pub(crate) fn habits(self) -> &'static Habits {
        match self {
            Persona::DigitalSelfServer => &DIGITAL_SELF_SERVER,
            Persona::PhoneReliant => &PHONE_RELIANT,
            Persona::SocialVocal => &SOCIAL_VOCAL,
            Persona::StoreGoer => &STORE_GOER,
            Persona::LowTouch => &LOW_TOUCH,
        }
    }
}

impl std::fmt::Display for Persona {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The probabilities that make a persona. Weight arrays need not sum to 1.
pub(crate) struct Habits {
    pub share: f64,
    /// Mean days between the episodes the customer starts on their own (exponential gaps).
    pub episode_gap_days: f64,
    /// Weights of self-started episodes: usage session, marketing touch, support issue, loyalty act.
    pub episodes: [f64; 4],
    /// Where a support issue starts: chatbot, live chat, phone, store, social media.
    pub support: [f64; 5],
    /// How a bill gets paid: autopay, web, app, IVR, store.
    pub pay: [f64; 5],
    /// Where the first purchase happens: web, phone (sales line), store.
    pub purchase: [f64; 3],
    /// Probability of installing the mobile app.
    pub app_user: f64,
    /// Probability of receiving paper bills (mail) rather than email bills.
    pub paper_bill: f64,
    /// Weights of the age bands of [`AGE_BANDS`].
    pub ages: [f64; 6],
    /// Added to every sentiment this persona expresses.
    pub mood: f64,
}

pub(crate) const AGE_BANDS: [&str; 6] = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"];

const DIGITAL_SELF_SERVER: Habits = Habits {
    share: 0.32,
    episode_gap_days: 30.0,
    episodes: [0.55, 0.18, 0.14, 0.13],
    support: [0.60, 0.22, 0.12, 0.02, 0.04],
    pay: [0.45, 0.25, 0.30, 0.0, 0.0],
    purchase: [1.0, 0.0, 0.0],
    app_user: 0.85,
    paper_bill: 0.0,
    ages: [0.22, 0.34, 0.24, 0.12, 0.06, 0.02],
    mood: 0.10,
};

const PHONE_RELIANT: Habits = Habits {
    share: 0.20,
    episode_gap_days: 36.0,
    episodes: [0.15, 0.25, 0.50, 0.10],
    support: [0.04, 0.04, 0.82, 0.08, 0.02],
    pay: [0.30, 0.10, 0.0, 0.50, 0.10],
    purchase: [0.20, 0.80, 0.0],
    app_user: 0.10,
    paper_bill: 0.60,
    ages: [0.02, 0.06, 0.14, 0.24, 0.28, 0.26],
    mood: -0.05,
};

const SOCIAL_VOCAL: Habits = Habits {
    share: 0.15,
    episode_gap_days: 24.0,
    episodes: [0.40, 0.12, 0.20, 0.28],
    support: [0.25, 0.15, 0.15, 0.0, 0.45],
    pay: [0.35, 0.30, 0.35, 0.0, 0.0],
    purchase: [1.0, 0.0, 0.0],
    app_user: 0.90,
    paper_bill: 0.0,
    ages: [0.35, 0.35, 0.18, 0.08, 0.03, 0.01],
    mood: -0.15,
};

const STORE_GOER: Habits = Habits {
    share: 0.15,
    episode_gap_days: 40.0,
    episodes: [0.25, 0.25, 0.30, 0.20],
    support: [0.04, 0.04, 0.25, 0.67, 0.0],
    pay: [0.30, 0.10, 0.05, 0.05, 0.50],
    purchase: [0.15, 0.0, 0.85],
    app_user: 0.30,
    paper_bill: 0.40,
    ages: [0.06, 0.14, 0.22, 0.24, 0.20, 0.14],
    mood: 0.05,
};

const LOW_TOUCH: Habits = Habits {
    share: 0.18,
    episode_gap_days: 60.0,
    episodes: [0.50, 0.30, 0.15, 0.05],
    support: [0.40, 0.20, 0.30, 0.05, 0.05],
    pay: [0.85, 0.10, 0.05, 0.0, 0.0],
    purchase: [0.90, 0.10, 0.0],
    app_user: 0.40,
    paper_bill: 0.20,
    ages: [0.10, 0.22, 0.26, 0.22, 0.14, 0.06],
    mood: 0.0,
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_sum_to_one_and_names_are_distinct() {
        let total: f64 = Persona::ALL.iter().map(|p| p.share()).sum();
        assert!((total - 1.0).abs() < 1e-9);
        let mut names: Vec<_> = Persona::ALL.iter().map(|p| p.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), Persona::ALL.len());
    }
}
