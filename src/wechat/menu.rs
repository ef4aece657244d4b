//! The custom menu as WeChat's `menu/create` and `menu/get` speak it, and
//! WeChat's limits on it, checked before pushing so an admin reads which
//! button is wrong instead of a bare `40018`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// At most this many buttons across the bar.
pub const MAX_TOP_BUTTONS: usize = 3;
/// At most this many buttons under one top-level button.
pub const MAX_SUB_BUTTONS: usize = 5;
/// Name limits are bytes of UTF-8 (a Chinese character is 3), not characters.
pub const MAX_TOP_NAME_BYTES: usize = 16;
pub const MAX_SUB_NAME_BYTES: usize = 60;
pub const MAX_KEY_BYTES: usize = 128;
pub const MAX_URL_BYTES: usize = 1024;

/// A menu bar: `{"button":[…]}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Menu {
    pub button: Vec<Button>,
}

/// One button. A top-level button either acts itself (`type` + `key`/`url`)
/// or opens its `sub_button` list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Button {
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sub_button: Vec<Button>,
    /// Fields of button types this app does not compose (mini programs,
    /// media…), kept so a menu read from WeChat shows and round-trips whole.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl Button {
    /// A button that sends a `CLICK` event with `key` to the server.
    pub fn click(name: impl Into<String>, key: impl Into<String>) -> Button {
        Button { kind: Some("click".into()), key: Some(key.into()), ..Button::empty(name) }
    }

    /// A button that opens `url` inside WeChat.
    pub fn view(name: impl Into<String>, url: impl Into<String>) -> Button {
        Button { kind: Some("view".into()), url: Some(url.into()), ..Button::empty(name) }
    }

    /// A top-level button that opens a list of `subs`.
    pub fn parent(name: impl Into<String>, subs: Vec<Button>) -> Button {
        Button { sub_button: subs, ..Button::empty(name) }
    }

    fn empty(name: impl Into<String>) -> Button {
        Button { name: name.into(), kind: None, key: None, url: None, sub_button: vec![], other: Map::new() }
    }
}

impl Menu {
    /// The JSON body for `menu/create`, indented for a preview.
    pub fn to_pretty_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a menu always serializes")
    }
}

/// `name` shortened to at most `max` bytes, ending in "…" when shortened, cut
/// between characters: WeChat refuses a name over the limit, and a name cut
/// mid-character is not UTF-8 at all.
pub fn fit_name(name: &str, max: usize) -> String {
    let name = name.trim();
    if name.len() <= max {
        return name.to_string();
    }
    const ELLIPSIS: &str = "…";
    let mut cut = cut_to_bytes(name, max.saturating_sub(ELLIPSIS.len())).trim_end().to_string();
    cut.push_str(ELLIPSIS);
    cut
}

/// The longest prefix of `s` that fits in `max` bytes and ends on a character boundary.
pub fn cut_to_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Why WeChat would refuse a menu, in words naming the button.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("菜单不符合微信的要求：{0}")]
pub struct MenuError(pub String);

/// Checks WeChat's limits: 1–3 top-level buttons, 1–5 sub-buttons under a
/// parent, names within 16 / 60 bytes, keys within 128 bytes, urls within 1024.
pub fn validate(menu: &Menu) -> Result<(), MenuError> {
    let fail = |why: String| Err(MenuError(why));
    if menu.button.is_empty() || menu.button.len() > MAX_TOP_BUTTONS {
        return fail(format!("一级菜单要有 1 到 {MAX_TOP_BUTTONS} 个按钮，现在有 {} 个", menu.button.len()));
    }
    for (i, top) in menu.button.iter().enumerate() {
        let at = format!("第 {} 个一级按钮「{}」", i + 1, top.name);
        check_name(&at, &top.name, MAX_TOP_NAME_BYTES)?;
        if top.sub_button.is_empty() && top.kind.is_none() {
            return fail(format!("{at}既没有子按钮也没有动作；子按钮要有 1 到 {MAX_SUB_BUTTONS} 个"));
        }
        if top.sub_button.is_empty() {
            check_action(&at, top)?;
            continue;
        }
        if top.sub_button.len() > MAX_SUB_BUTTONS {
            return fail(format!("{at}下最多 {MAX_SUB_BUTTONS} 个子按钮，现在有 {} 个", top.sub_button.len()));
        }
        for (j, sub) in top.sub_button.iter().enumerate() {
            let at = format!("{at}下第 {} 个子按钮「{}」", j + 1, sub.name);
            check_name(&at, &sub.name, MAX_SUB_NAME_BYTES)?;
            if !sub.sub_button.is_empty() {
                return fail(format!("{at}不能再有下一级按钮"));
            }
            check_action(&at, sub)?;
        }
    }
    Ok(())
}

fn check_name(at: &str, name: &str, max: usize) -> Result<(), MenuError> {
    if name.trim().is_empty() {
        return Err(MenuError(format!("{at}没有名字")));
    }
    if name.len() > max {
        return Err(MenuError(format!("{at}的名字有 {} 字节，超过了 {max} 字节（一个汉字算 3 字节）", name.len())));
    }
    Ok(())
}

/// The fields each action type needs: a key for events, a url for links.
fn check_action(at: &str, button: &Button) -> Result<(), MenuError> {
    let kind = button.kind.as_deref().unwrap_or_default();
    let fail = |why: String| Err(MenuError(why));
    match kind {
        "view" => match button.url.as_deref() {
            None | Some("") => fail(format!("{at}是链接按钮，但没有链接")),
            Some(url) if url.len() > MAX_URL_BYTES => fail(format!("{at}的链接超过了 {MAX_URL_BYTES} 字节")),
            Some(_) => Ok(()),
        },
        "miniprogram" | "media_id" | "view_limited" | "article_id" | "article_view_limited" => Ok(()),
        "" => fail(format!("{at}没有类型")),
        _ => match button.key.as_deref() {
            None | Some("") => fail(format!("{at}没有 key")),
            Some(key) if key.len() > MAX_KEY_BYTES => fail(format!("{at}的 key 超过了 {MAX_KEY_BYTES} 字节")),
            Some(_) => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cutting_never_splits_a_character() {
        assert_eq!(cut_to_bytes("abc", 5), "abc");
        assert_eq!(cut_to_bytes("新年音乐会", 7), "新年");
        assert_eq!(cut_to_bytes("新年音乐会", 6), "新年");
        assert_eq!(cut_to_bytes("新年音乐会", 2), "");
        assert_eq!(cut_to_bytes("a🎵b", 4), "a");
        for max in 0..20 {
            let cut = cut_to_bytes("音乐会🎵 concert 演出", max);
            assert!(cut.len() <= max);
        }
    }

    #[test]
    fn long_names_end_in_an_ellipsis_within_the_limit() {
        assert_eq!(fit_name("  新年音乐会 ", 60), "新年音乐会");
        assert_eq!(fit_name("新年音乐会", 15), "新年音乐会");
        let long = "清华大学学生艺术团二零二五年新年音乐会暨优秀节目展演专场";
        let fitted = fit_name(long, MAX_SUB_NAME_BYTES);
        assert!(fitted.len() <= 60 && fitted.ends_with('…'), "{fitted}");
        assert_eq!(fitted, "清华大学学生艺术团二零二五年新年音乐会…");
        // A space before the cut is not left dangling before the ellipsis.
        assert_eq!(fit_name("abcdefghijklm opqrstu", 17), "abcdefghijklm…");
        assert!(fit_name(&"a".repeat(100), 16).len() <= 16);
    }

    fn ok_menu() -> Menu {
        Menu {
            button: vec![
                Button::parent("抢票", vec![Button::click("新年音乐会", "BOOK_1")]),
                Button::click("查票", "MY_TICKETS"),
                Button::parent("服务", vec![Button::view("官网", "https://example.com")]),
            ],
        }
    }

    #[test]
    fn a_menu_within_the_limits_passes() {
        validate(&ok_menu()).unwrap();
    }

    #[test]
    fn each_limit_is_refused_with_the_button_named() {
        type BreakIt = fn(&mut Menu);
        let cases: Vec<(BreakIt, &str)> = vec![
            (|m| m.button.clear(), "1 到 3"),
            (|m| m.button.push(Button::click("多余", "X")), "现在有 4 个"),
            (|m| m.button[1].name = "我的所有电子票据".into(), "超过了 16 字节"),
            (|m| m.button[0].sub_button[0].name = "音".repeat(21), "超过了 60 字节"),
            (|m| m.button[0].sub_button = vec![Button::click("a", "A"); 6], "最多 5 个"),
            (|m| m.button[0] = Button::parent("抢票", vec![]), "既没有子按钮"),
            (|m| m.button[1].key = Some("K".repeat(129)), "key 超过了 128"),
            (|m| m.button[1].key = None, "没有 key"),
            (|m| m.button[2].sub_button[0].url = Some(format!("https://e.com/{}", "a".repeat(1020))), "链接超过"),
            (|m| m.button[0].sub_button[0].sub_button = vec![Button::click("x", "X")], "不能再有下一级"),
            (|m| m.button[0].sub_button[0].name = " ".into(), "没有名字"),
        ];
        for (break_it, expected) in cases {
            let mut menu = ok_menu();
            break_it(&mut menu);
            let err = validate(&menu).unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
        let err = validate(&Menu { button: vec![Button::click("查票", "K".repeat(129))] }).unwrap_err();
        assert!(err.to_string().contains("第 1 个一级按钮「查票」"), "{err}");
    }

    #[test]
    fn exactly_at_the_limits_passes() {
        let menu = Menu {
            button: vec![
                Button::click("五个汉字abcd", "K".repeat(128)),
                Button::parent("p", vec![Button::click("音".repeat(20), "A"); 5]),
            ],
        };
        assert_eq!(menu.button[0].name.len(), 16);
        validate(&menu).unwrap();
    }

    #[test]
    fn serializes_as_menu_create_expects_and_reads_what_menu_get_returns() {
        let json = serde_json::to_value(ok_menu()).unwrap();
        assert_eq!(
            json,
            json!({"button": [
                {"name": "抢票", "sub_button": [{"name": "新年音乐会", "type": "click", "key": "BOOK_1"}]},
                {"name": "查票", "type": "click", "key": "MY_TICKETS"},
                {"name": "服务", "sub_button": [{"name": "官网", "type": "view", "url": "https://example.com"}]},
            ]})
        );
        // Chinese goes out as UTF-8, not \u escapes.
        assert!(serde_json::to_string(&ok_menu()).unwrap().contains("抢票"));
        // menu/get gives empty sub_button lists and types we do not compose.
        let got: Menu = serde_json::from_value(json!({"button": [
            {"type": "click", "name": "查票", "key": "MY_TICKETS", "sub_button": []},
            {"type": "miniprogram", "name": "小程序", "url": "https://e.com", "appid": "wx1", "pagepath": "p/i"},
        ]}))
        .unwrap();
        assert_eq!(got.button[0], Button::click("查票", "MY_TICKETS"));
        assert_eq!(got.button[1].other["appid"], "wx1");
        assert_eq!(serde_json::to_value(&got).unwrap()["button"][1]["pagepath"], "p/i");
    }
}
