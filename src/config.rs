//! Settings from the environment (and `.env`), with every default in one place.

use std::{fmt, net::SocketAddr, path::PathBuf};

use regex::Regex;
use time_tz::TimeZone;

use crate::error::AppError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StudentVerify {
    /// Any student ID matching `STUDENT_ID_PATTERN` may bind.
    Open,
    /// The ID must be in the imported roster and the name must match.
    Roster,
    /// The campus CAS login says who the student is; no ID is typed.
    Cas,
}

/// How WeChat delivers messages, as the WeChat console names the modes
/// (消息加解密方式: 明文模式 / 兼容模式 / 安全模式).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageMode {
    /// Plaintext XML, signed with the Token.
    Plaintext,
    /// Plaintext and an encrypted copy in one body; either is accepted.
    Compatible,
    /// Only the encrypted envelope, with a valid `msg_signature`, is accepted.
    Safe,
}

impl MessageMode {
    /// The name used by `WECHAT_MESSAGE_MODE` and shown on the landing page.
    pub fn name(self) -> &'static str {
        match self {
            MessageMode::Plaintext => "plaintext",
            MessageMode::Compatible => "compatible",
            MessageMode::Safe => "safe",
        }
    }

    /// The name the WeChat console shows for the mode.
    pub fn console_name(self) -> &'static str {
        match self {
            MessageMode::Plaintext => "明文模式",
            MessageMode::Compatible => "兼容模式",
            MessageMode::Safe => "安全模式",
        }
    }
}

#[derive(Clone)]
pub struct Config {
    pub database_url: Option<String>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// `METRICS_LISTEN`: where `/metrics` is served, apart from `LISTEN`; unset is off.
    pub metrics_listen: Option<SocketAddr>,
    pub public_url: String,
    /// `None` means: use the development token stored in the database.
    pub wechat_token: Option<String>,
    pub wechat_appid: Option<String>,
    pub wechat_secret: Option<String>,
    pub wechat_aes_key: Option<String>,
    pub message_mode: MessageMode,
    pub wechat_api_base: String,
    pub secret_key: Option<String>,
    pub student_verify: StudentVerify,
    pub student_id_pattern: Regex,
    pub timezone: &'static time_tz::Tz,

    /// `TRUSTED_PROXIES`: reverse proxies whose `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// `REMINDER_HOURS`: remind ticket holders this long before the start (0: no reminders).
    pub reminder_hours: u32,
    /// `REMINDER_CHECK_SECONDS`: how often the clock's sweep runs (1–60).
    pub reminder_check_seconds: u32,
    /// `NO_SHOW_LIMIT` (0, the default, is off), `NO_SHOW_WINDOW_DAYS`, `NO_SHOW_PAUSE_DAYS`.
    pub no_show: Option<crate::booking::no_show::NoShowRule>,
    /// `WECHAT_TEMPLATE_CHANGE`: the template message for a changed or cancelled activity.
    pub template_change: Option<String>,
    /// `WECHAT_TEMPLATE_REMINDER`: the template message for a reminder.
    pub template_reminder: Option<String>,
    /// `CAS_BASE_URL`: the campus CAS server, required when `STUDENT_VERIFY=cas`.
    pub cas_base_url: Option<String>,
    /// `CAS_STUDENT_ID_ATTRIBUTE`: the CAS attribute holding the student ID; `<cas:user>` when unset.
    pub cas_student_id_attribute: Option<String>,
    /// `WECHAT_OAUTH=on`: `/m/*` pages identify the student by WeChat web authorization.
    pub wechat_oauth: bool,
    /// `WECHAT_OAUTH_BASE`: where WeChat's authorize page lives (tests point it at a fake).
    pub wechat_oauth_base: String,
    /// `BACKUP_DIR`: where backups are written (default `DATA_DIR/backups`).
    pub backup_dir: PathBuf,
    /// `BACKUP_AT`: the nightly backup's time of day in `TIMEZONE` (`HH:MM` or
    /// `HH:MM:SS`); `None` is off. Default 04:00 with the managed cluster, off
    /// with `DATABASE_URL` (whose operator keeps their own backups) unless set.
    pub backup_at: Option<time::Time>,
    /// `BACKUP_KEEP`: how many nightly backup files to keep in `BACKUP_DIR`.
    pub backup_keep: u32,
    /// `MENU_AUTO=on`: the clock recomposes the custom menu and pushes it when it changes.
    pub menu_auto: bool,
    /// `MENU_AUTO_DEBOUNCE_SECONDS` (for tests; default 60): at most one automatic push this often.
    pub menu_auto_debounce_seconds: u32,
}

// Secrets never reach logs, so Debug shows only whether they are set.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |v: &Option<String>| if v.is_some() { "<set>" } else { "<unset>" };
        f.debug_struct("Config")
            .field("database_url", &set(&self.database_url))
            .field("data_dir", &self.data_dir)
            .field("listen", &self.listen)
            .field("metrics_listen", &self.metrics_listen)
            .field("public_url", &self.public_url)
            .field("wechat_token", &set(&self.wechat_token))
            .field("wechat_appid", &self.wechat_appid)
            .field("wechat_secret", &set(&self.wechat_secret))
            .field("wechat_aes_key", &set(&self.wechat_aes_key))
            .field("message_mode", &self.message_mode)
            .field("wechat_api_base", &self.wechat_api_base)
            .field("secret_key", &set(&self.secret_key))
            .field("student_verify", &self.student_verify)
            .field("student_id_pattern", &self.student_id_pattern.as_str())
            .field("timezone", &self.timezone.name())
            .field("trusted_proxies", &self.trusted_proxies)
            .field("reminder_hours", &self.reminder_hours)
            .field("reminder_check_seconds", &self.reminder_check_seconds)
            .field("no_show", &self.no_show)
            .field("template_change", &self.template_change)
            .field("template_reminder", &self.template_reminder)
            .field("cas_base_url", &self.cas_base_url)
            .field("cas_student_id_attribute", &self.cas_student_id_attribute)
            .field("wechat_oauth", &self.wechat_oauth)
            .field("wechat_oauth_base", &self.wechat_oauth_base)
            .field("menu_auto", &self.menu_auto)
            .field("menu_auto_debounce_seconds", &self.menu_auto_debounce_seconds)
            .field("backup_dir", &self.backup_dir)
            .field("backup_at", &self.backup_at)
            .field("backup_keep", &self.backup_keep)
            .finish()
    }
}

impl Config {
    /// Reads `.env` (if present) and the process environment.
    pub fn from_env() -> Result<Config, AppError> {
        let _ = dotenvy::dotenv();
        Config::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds a config from any variable source; tests pass a map.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, AppError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let bad = |name: &str, why: String| AppError::Config(format!("{name}: {why}"));

        let listen: SocketAddr = get("LISTEN")
            .unwrap_or_else(|| "127.0.0.1:8000".into())
            .parse()
            .map_err(|e| bad("LISTEN", format!("not an address:port ({e})")))?;
        let metrics_listen: Option<SocketAddr> = get("METRICS_LISTEN")
            .map(|v| v.parse().map_err(|e| bad("METRICS_LISTEN", format!("not an address:port ({e})"))))
            .transpose()?;
        // On the public listener the metrics would be public: never, whatever the port's number.
        if metrics_listen.is_some_and(|m| m.port() == listen.port() && m.port() != 0) {
            return Err(bad("METRICS_LISTEN", format!("must be another port than LISTEN ({listen})")));
        }
        let public_url =
            get("PUBLIC_URL").unwrap_or_else(|| format!("http://{listen}")).trim_end_matches('/').to_string();
        if !public_url.starts_with("http://") && !public_url.starts_with("https://") {
            return Err(bad("PUBLIC_URL", "must start with http:// or https://".into()));
        }
        let wechat_aes_key = get("WECHAT_AES_KEY");
        if let Some(key) = &wechat_aes_key
            && key.len() != 43
        {
            return Err(bad("WECHAT_AES_KEY", "must be the 43-character EncodingAESKey".into()));
        }
        let message_mode = match get("WECHAT_MESSAGE_MODE").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None if wechat_aes_key.is_some() => MessageMode::Compatible,
            None | Some("plaintext") => MessageMode::Plaintext,
            Some("compatible") => MessageMode::Compatible,
            Some("safe") => MessageMode::Safe,
            Some(other) => {
                return Err(bad("WECHAT_MESSAGE_MODE", format!("`{other}` is not plaintext, compatible or safe")));
            }
        };
        if message_mode != MessageMode::Plaintext && wechat_aes_key.is_none() {
            return Err(bad(
                "WECHAT_MESSAGE_MODE",
                format!("{} mode needs WECHAT_AES_KEY (the EncodingAESKey) to be set", message_mode.name()),
            ));
        }
        let student_verify = match get("STUDENT_VERIFY").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("open") => StudentVerify::Open,
            Some("roster") => StudentVerify::Roster,
            Some("cas") => StudentVerify::Cas,
            Some(other) => {
                return Err(bad("STUDENT_VERIFY", format!("`{other}` is not open, roster or cas")));
            }
        };
        let pattern = get("STUDENT_ID_PATTERN").unwrap_or_else(|| "^[0-9]{10}$".into());
        let student_id_pattern =
            Regex::new(&pattern).map_err(|e| bad("STUDENT_ID_PATTERN", format!("not a regular expression ({e})")))?;
        let tz_name = get("TIMEZONE").unwrap_or_else(|| "Asia/Shanghai".into());
        let timezone = time_tz::timezones::get_by_name(&tz_name)
            .ok_or_else(|| bad("TIMEZONE", format!("unknown time zone `{tz_name}`")))?;

        let trusted_proxies = get("TRUSTED_PROXIES")
            .map(|list| parse_proxies(&list).map_err(|why| bad("TRUSTED_PROXIES", why)))
            .transpose()?
            .unwrap_or_default();

        let number = |name: &str, default: u32, range: std::ops::RangeInclusive<u32>| match get(name) {
            None => Ok(default),
            Some(text) => text.trim().parse::<u32>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
                bad(name, format!("`{text}` is not a whole number from {} to {}", range.start(), range.end()))
            }),
        };
        let reminder_hours = number("REMINDER_HOURS", 2, 0..=168)?;
        let reminder_check_seconds = number("REMINDER_CHECK_SECONDS", 60, 1..=60)?;
        let no_show = match number("NO_SHOW_LIMIT", 0, 0..=100)? {
            0 => None,
            limit => Some(crate::booking::no_show::NoShowRule {
                limit,
                window_days: number("NO_SHOW_WINDOW_DAYS", 90, 1..=3650)?,
                pause_days: number("NO_SHOW_PAUSE_DAYS", 30, 1..=3650)?,
            }),
        };
        let url_setting = |name: &str| -> Result<Option<String>, AppError> {
            let Some(url) = get(name) else { return Ok(None) };
            if !url.starts_with("http://") && !url.starts_with("https://") {
                return Err(bad(name, "must start with http:// or https://".into()));
            }
            Ok(Some(url.trim_end_matches('/').to_string()))
        };
        let cas_base_url = url_setting("CAS_BASE_URL")?;
        if student_verify == StudentVerify::Cas && cas_base_url.is_none() {
            return Err(bad("CAS_BASE_URL", "STUDENT_VERIFY=cas needs the campus CAS server's address".into()));
        }
        let wechat_oauth = match get("WECHAT_OAUTH").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => return Err(bad("WECHAT_OAUTH", format!("`{other}` is neither on nor off"))),
        };
        if wechat_oauth && (get("WECHAT_APPID").is_none() || get("WECHAT_SECRET").is_none()) {
            return Err(bad("WECHAT_OAUTH", "on needs WECHAT_APPID and WECHAT_SECRET".into()));
        }
        let menu_auto = match get("MENU_AUTO").as_deref().map(str::to_ascii_lowercase).as_deref() {
            None | Some("off") => false,
            Some("on") => true,
            Some(other) => return Err(bad("MENU_AUTO", format!("`{other}` is neither on nor off"))),
        };
        // Said at start-up: otherwise every push would fail, quietly, in the background.
        if menu_auto && (get("WECHAT_APPID").is_none() || get("WECHAT_SECRET").is_none()) {
            return Err(bad("MENU_AUTO", "on needs WECHAT_APPID and WECHAT_SECRET".into()));
        }
        let menu_auto_debounce_seconds = number("MENU_AUTO_DEBOUNCE_SECONDS", 60, 1..=3600)?;

        let database_url = get("DATABASE_URL");
        let data_dir = PathBuf::from(get("DATA_DIR").unwrap_or_else(|| "./data".into()));
        let backup_at = match get("BACKUP_AT") {
            None if database_url.is_some() => None,
            None => Some(time::Time::from_hms(4, 0, 0).expect("a time of day")),
            Some(text) if text.trim().eq_ignore_ascii_case("off") => None,
            Some(text) => Some(parse_time_of_day(text.trim()).ok_or_else(|| {
                bad("BACKUP_AT", format!("`{text}` is neither a time of day like 04:00 (or 04:00:00) nor off"))
            })?),
        };
        let backup_dir = get("BACKUP_DIR").map(PathBuf::from).unwrap_or_else(|| data_dir.join("backups"));
        let backup_keep = number("BACKUP_KEEP", 14, 1..=10_000)?;

        Ok(Config {
            database_url,
            data_dir,
            backup_dir,
            backup_at,
            backup_keep,
            listen,
            metrics_listen,
            public_url,
            wechat_token: get("WECHAT_TOKEN"),
            wechat_appid: get("WECHAT_APPID"),
            wechat_secret: get("WECHAT_SECRET"),
            wechat_aes_key,
            message_mode,
            wechat_api_base: get("WECHAT_API_BASE")
                .unwrap_or_else(|| "https://api.weixin.qq.com".into())
                .trim_end_matches('/')
                .to_string(),
            secret_key: get("SECRET_KEY"),
            student_verify,
            student_id_pattern,
            timezone,
            trusted_proxies,
            reminder_hours,
            reminder_check_seconds,
            no_show,
            template_change: get("WECHAT_TEMPLATE_CHANGE"),
            template_reminder: get("WECHAT_TEMPLATE_REMINDER"),
            cas_base_url,
            cas_student_id_attribute: get("CAS_STUDENT_ID_ATTRIBUTE"),
            wechat_oauth,
            wechat_oauth_base: url_setting("WECHAT_OAUTH_BASE")?.unwrap_or_else(|| "https://open.weixin.qq.com".into()),
            menu_auto,
            menu_auto_debounce_seconds,
        })
    }
}

/// `04:00` or `04:00:30`: a time of day (seconds let a test schedule a night a few seconds out).
fn parse_time_of_day(text: &str) -> Option<time::Time> {
    let parts: Vec<&str> = text.split(':').collect();
    if !(2..=3).contains(&parts.len()) || parts.iter().any(|p| p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let number = |i: usize| parts.get(i).map_or(Some(0), |p| p.parse::<u8>().ok());
    time::Time::from_hms(number(0)?, number(1)?, number(2)?).ok()
}

/// `10.0.0.1, 10.1.0.0/16, fd00::/8`: addresses and networks, comma-separated.
fn parse_proxies(list: &str) -> Result<Vec<ipnet::IpNet>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            entry
                .parse::<ipnet::IpNet>()
                .or_else(|_| entry.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| format!("`{entry}` is neither an IP address nor a network like 10.0.0.0/8"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, AppError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_match_the_spec() {
        let c = config(&[]).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8000");
        assert_eq!(c.public_url, "http://127.0.0.1:8000");
        assert_eq!(c.data_dir, PathBuf::from("./data"));
        assert_eq!(c.wechat_api_base, "https://api.weixin.qq.com");
        assert_eq!(c.student_verify, StudentVerify::Open);
        assert!(c.student_id_pattern.is_match("2024010001"));
        assert!(!c.student_id_pattern.is_match("20240100011"));
        assert_eq!(c.timezone.name(), "Asia/Shanghai");
        assert_eq!((c.reminder_hours, c.reminder_check_seconds), (2, 60));
        assert!(c.template_change.is_none() && c.template_reminder.is_none());
        assert!(c.no_show.is_none(), "the no-show rule is off by default");
        assert!(c.metrics_listen.is_none(), "/metrics is off unless METRICS_LISTEN names an address");
    }

    #[test]
    fn metrics_listen_is_apart_from_the_public_listener() {
        let c = config(&[("METRICS_LISTEN", "127.0.0.1:9100")]).unwrap();
        assert_eq!(c.metrics_listen.unwrap().to_string(), "127.0.0.1:9100");
        // The same port on another address would still be the public port.
        let err = config(&[("LISTEN", "0.0.0.0:8000"), ("METRICS_LISTEN", "127.0.0.1:8000")]).unwrap_err();
        assert!(err.to_string().contains("another port than LISTEN"), "{err}");
    }

    #[test]
    fn the_no_show_rule_takes_its_limit_window_and_pause() {
        use crate::booking::no_show::NoShowRule;
        let c = config(&[("NO_SHOW_LIMIT", "2")]).unwrap();
        assert_eq!(c.no_show, Some(NoShowRule { limit: 2, window_days: 90, pause_days: 30 }));
        let c = config(&[("NO_SHOW_LIMIT", "3"), ("NO_SHOW_WINDOW_DAYS", "60"), ("NO_SHOW_PAUSE_DAYS", "7")]).unwrap();
        assert_eq!(c.no_show, Some(NoShowRule { limit: 3, window_days: 60, pause_days: 7 }));
        assert!(config(&[("NO_SHOW_LIMIT", "0"), ("NO_SHOW_WINDOW_DAYS", "60")]).unwrap().no_show.is_none());
        assert!(config(&[("NO_SHOW_LIMIT", "2"), ("NO_SHOW_PAUSE_DAYS", "0")]).is_err());
    }

    #[test]
    fn bad_values_are_named() {
        for (var, value) in [
            ("LISTEN", "nowhere"),
            ("STUDENT_VERIFY", "maybe"),
            ("TIMEZONE", "Mars/Base"),
            ("WECHAT_AES_KEY", "short"),
            ("STUDENT_ID_PATTERN", "("),
            ("WECHAT_MESSAGE_MODE", "secure"),
            ("WECHAT_MESSAGE_MODE", "safe"),
            ("REMINDER_HOURS", "-1"),
            ("REMINDER_HOURS", "two"),
            ("REMINDER_CHECK_SECONDS", "0"),
            ("CAS_BASE_URL", "cas.example.edu"),
            ("WECHAT_OAUTH", "yes"),
            ("WECHAT_OAUTH", "on"),
            ("METRICS_LISTEN", "9100"),
            ("MENU_AUTO", "yes"),
            ("MENU_AUTO", "on"),
            ("MENU_AUTO_DEBOUNCE_SECONDS", "0"),
        ] {
            let err = config(&[(var, value)]).unwrap_err().to_string();
            assert!(err.contains(var), "{err}");
        }
    }

    #[test]
    fn message_mode_follows_the_key_unless_named() {
        let key = "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR";
        assert_eq!(config(&[]).unwrap().message_mode, MessageMode::Plaintext);
        assert_eq!(config(&[("WECHAT_AES_KEY", key)]).unwrap().message_mode, MessageMode::Compatible);
        let safe = config(&[("WECHAT_AES_KEY", key), ("WECHAT_MESSAGE_MODE", "SAFE")]).unwrap();
        assert_eq!(safe.message_mode, MessageMode::Safe);
        let plain = config(&[("WECHAT_AES_KEY", key), ("WECHAT_MESSAGE_MODE", "plaintext")]).unwrap();
        assert_eq!(plain.message_mode, MessageMode::Plaintext);
        let err = config(&[("WECHAT_MESSAGE_MODE", "compatible")]).unwrap_err().to_string();
        assert!(err.contains("needs WECHAT_AES_KEY"), "{err}");
    }

    #[test]
    fn cas_mode_needs_the_cas_server() {
        let err = config(&[("STUDENT_VERIFY", "cas")]).unwrap_err().to_string();
        assert!(err.contains("CAS_BASE_URL"), "{err}");
        let c = config(&[("STUDENT_VERIFY", "CAS"), ("CAS_BASE_URL", "https://cas.example.edu/cas/")]).unwrap();
        assert_eq!(c.student_verify, StudentVerify::Cas);
        assert_eq!(c.cas_base_url.as_deref(), Some("https://cas.example.edu/cas"));
        assert_eq!(c.wechat_oauth_base, "https://open.weixin.qq.com");
        assert!(!c.wechat_oauth);
    }

    #[test]
    fn nightly_backups_are_on_for_the_managed_cluster_and_off_for_database_url_unless_set() {
        let c = config(&[]).unwrap();
        assert_eq!(c.backup_at, Some(time::macros::time!(04:00)));
        assert_eq!((c.backup_dir, c.backup_keep), (PathBuf::from("./data/backups"), 14));
        let url = "postgres://app@db.example.edu/tickets";
        assert_eq!(config(&[("DATABASE_URL", url)]).unwrap().backup_at, None);
        let c = config(&[("DATABASE_URL", url), ("BACKUP_AT", "02:30"), ("DATA_DIR", "/srv/wt")]).unwrap();
        assert_eq!(c.backup_at, Some(time::macros::time!(02:30)));
        assert_eq!(c.backup_dir, PathBuf::from("/srv/wt/backups"));
        assert_eq!(config(&[("BACKUP_AT", "03:04:05")]).unwrap().backup_at, Some(time::macros::time!(03:04:05)));
        assert_eq!(config(&[("BACKUP_AT", "OFF")]).unwrap().backup_at, None);
        let c = config(&[("BACKUP_DIR", "/mnt/backups"), ("BACKUP_KEEP", "3")]).unwrap();
        assert_eq!((c.backup_dir, c.backup_keep), (PathBuf::from("/mnt/backups"), 3));
        for bad in ["4", "4:00", "24:00", "04:60", "04:00:00:00", "tonight", "04-00"] {
            let err = config(&[("BACKUP_AT", bad)]).unwrap_err().to_string();
            assert!(err.contains("BACKUP_AT"), "{bad}: {err}");
        }
        assert!(config(&[("BACKUP_KEEP", "0")]).unwrap_err().to_string().contains("BACKUP_KEEP"));
    }

    #[test]
    fn the_automatic_menu_is_off_by_default_and_needs_the_api_credentials() {
        let c = config(&[]).unwrap();
        assert!(!c.menu_auto);
        assert_eq!(c.menu_auto_debounce_seconds, 60);
        let err = config(&[("MENU_AUTO", "on"), ("WECHAT_APPID", "wx1")]).unwrap_err().to_string();
        assert!(err.contains("MENU_AUTO") && err.contains("WECHAT_SECRET"), "{err}");
        let c = config(&[("MENU_AUTO", "ON"), ("WECHAT_APPID", "wx1"), ("WECHAT_SECRET", "s")]).unwrap();
        assert!(c.menu_auto);
        assert!(!config(&[("MENU_AUTO", "off")]).unwrap().menu_auto);
        assert_eq!(config(&[("MENU_AUTO_DEBOUNCE_SECONDS", "5")]).unwrap().menu_auto_debounce_seconds, 5);
    }

    #[test]
    fn debug_hides_secrets() {
        let c = config(&[("WECHAT_SECRET", "s3cr3t-value"), ("SECRET_KEY", "k3y-value"), ("WECHAT_TOKEN", "t0ken")])
            .unwrap();
        let shown = format!("{c:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("k3y") && !shown.contains("t0ken"), "{shown}");
    }

    #[test]
    fn trusted_proxies_are_addresses_and_networks() {
        assert!(config(&[]).unwrap().trusted_proxies.is_empty(), "nobody is trusted by default");
        let c = config(&[("TRUSTED_PROXIES", " 127.0.0.1, 10.0.0.0/8,fd00::/8 ,")]).unwrap();
        let shown: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1/32", "10.0.0.0/8", "fd00::/8"]);
        for bad in ["nginx", "10.0.0.0/33", "10.0.0.1 10.0.0.2", "127.0.0.1,localhost"] {
            let err = config(&[("TRUSTED_PROXIES", bad)]).unwrap_err().to_string();
            assert!(err.contains("TRUSTED_PROXIES"), "{err}");
        }
    }
}
