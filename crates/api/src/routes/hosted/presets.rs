//! IMAP/SMTP settings of well-known providers, by the domain of the address, so most users of
//! the hosted page only type their address and password.

pub struct Preset {
    pub label: &'static str,
    pub imap_host: &'static str,
    pub imap_port: u16,
    pub smtp_host: &'static str,
    pub smtp_port: u16,
    /// A note shown with the form (app passwords, …).
    pub note: &'static str,
}

const APP_PASSWORD: &str = "This provider requires an app password for IMAP: create one in your account's security settings.";

const PRESETS: &[(&[&str], Preset)] = &[
    (
        &["gmail.com", "googlemail.com"],
        Preset {
            label: "Gmail",
            imap_host: "imap.gmail.com",
            imap_port: 993,
            smtp_host: "smtp.gmail.com",
            smtp_port: 465,
            note: APP_PASSWORD,
        },
    ),
    (
        &["outlook.com", "hotmail.com", "live.com", "msn.com"],
        Preset {
            label: "Outlook.com",
            imap_host: "outlook.office365.com",
            imap_port: 993,
            smtp_host: "smtp-mail.outlook.com",
            smtp_port: 587,
            note: "",
        },
    ),
    (
        &["yahoo.com", "ymail.com"],
        Preset {
            label: "Yahoo Mail",
            imap_host: "imap.mail.yahoo.com",
            imap_port: 993,
            smtp_host: "smtp.mail.yahoo.com",
            smtp_port: 465,
            note: APP_PASSWORD,
        },
    ),
    (
        &["icloud.com", "me.com", "mac.com"],
        Preset {
            label: "iCloud Mail",
            imap_host: "imap.mail.me.com",
            imap_port: 993,
            smtp_host: "smtp.mail.me.com",
            smtp_port: 587,
            note: APP_PASSWORD,
        },
    ),
    (
        &["aol.com"],
        Preset {
            label: "AOL Mail",
            imap_host: "imap.aol.com",
            imap_port: 993,
            smtp_host: "smtp.aol.com",
            smtp_port: 465,
            note: APP_PASSWORD,
        },
    ),
    (
        &["fastmail.com", "fastmail.fm"],
        Preset {
            label: "Fastmail",
            imap_host: "imap.fastmail.com",
            imap_port: 993,
            smtp_host: "smtp.fastmail.com",
            smtp_port: 465,
            note: APP_PASSWORD,
        },
    ),
    (
        &["zoho.com", "zohomail.com"],
        Preset {
            label: "Zoho Mail",
            imap_host: "imap.zoho.com",
            imap_port: 993,
            smtp_host: "smtp.zoho.com",
            smtp_port: 465,
            note: "",
        },
    ),
    (
        &["gmx.com", "gmx.net", "gmx.de"],
        Preset {
            label: "GMX",
            imap_host: "imap.gmx.net",
            imap_port: 993,
            smtp_host: "mail.gmx.net",
            smtp_port: 587,
            note: "",
        },
    ),
    (
        &["yandex.com", "yandex.ru"],
        Preset {
            label: "Yandex Mail",
            imap_host: "imap.yandex.com",
            imap_port: 993,
            smtp_host: "smtp.yandex.com",
            smtp_port: 465,
            note: APP_PASSWORD,
        },
    ),
    (
        &["mail.com"],
        Preset {
            label: "mail.com",
            imap_host: "imap.mail.com",
            imap_port: 993,
            smtp_host: "smtp.mail.com",
            smtp_port: 587,
            note: "",
        },
    ),
];

/// The preset for `address`'s domain, if it is a well-known one.
pub fn for_address(address: &str) -> Option<&'static Preset> {
    let domain = address.rsplit_once('@')?.1.trim().to_ascii_lowercase();
    PRESETS
        .iter()
        .find(|(domains, _)| domains.contains(&domain.as_str()))
        .map(|(_, p)| p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_by_domain() {
        assert_eq!(
            for_address("ann@GMAIL.com").unwrap().imap_host,
            "imap.gmail.com"
        );
        assert_eq!(for_address("bob@hotmail.com").unwrap().smtp_port, 587);
        assert!(for_address("carol@example.test").is_none());
        assert!(for_address("no-at-sign").is_none());
    }
}
