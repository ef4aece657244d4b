//! WeChat drops a text reply longer than 2,048 bytes (UTF-8) and the student
//! sees "该公众号暂时无法提供服务" instead: lists are cut to fit, saying how
//! many were left out, and anything else too long is cut as a last resort.

/// WeChat's limit on a text reply's `Content`, in bytes.
pub const MAX_TEXT_BYTES: usize = 2048;

/// `head`, then as many of `items` as fit, then `tail(left_out)`, within [`MAX_TEXT_BYTES`].
pub fn list(head: &str, items: &[String], tail: impl Fn(usize) -> String) -> String {
    let mut shown = 0;
    let mut used = head.len();
    while shown < items.len() && used + items[shown].len() + tail(items.len() - shown - 1).len() <= MAX_TEXT_BYTES {
        used += items[shown].len();
        shown += 1;
    }
    cut(format!("{head}{}{}", items[..shown].concat(), tail(items.len() - shown)))
}

/// `text` if it fits; else its longest start that fits with a `…`, never
/// ending inside a link (a half `<a href=…` would show as markup).
pub fn cut(text: String) -> String {
    if text.len() <= MAX_TEXT_BYTES {
        return text;
    }
    tracing::warn!(bytes = text.len(), "a reply was cut to WeChat's 2048 bytes");
    let mut end = MAX_TEXT_BYTES - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let mut kept = &text[..end];
    if let Some(open) = kept.rfind("<a ")
        && !kept[open..].contains("</a>")
    {
        kept = &kept[..open];
    }
    format!("{kept}…")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_keeps_what_fits_and_counts_the_rest() {
        let items: Vec<String> = (0..10).map(|i| format!("{i}{}\n", "好".repeat(200))).collect();
        let text = list("头\n", &items, |n| if n > 0 { format!("还有 {n} 项") } else { String::new() });
        assert!(text.len() <= MAX_TEXT_BYTES, "{}", text.len());
        assert!(text.starts_with("头\n0") && text.contains("\n2") && !text.contains("\n3"), "{text}");
        assert!(text.ends_with("还有 7 项"), "{text}");
        let short = list("头\n", &items[..2], |n| format!("还有 {n} 项"));
        assert!(short.ends_with("还有 0 项") && short.contains("\n1"));
    }

    #[test]
    fn too_long_text_is_cut_on_a_character_and_outside_links() {
        let text = cut("好".repeat(1000));
        assert!(text.len() <= MAX_TEXT_BYTES && text.ends_with('…'));
        let linked = cut(format!("{}<a href=\"https://x/{}\">链接</a>", "a".repeat(2000), "b".repeat(100)));
        assert_eq!(linked, format!("{}…", "a".repeat(2000)));
        assert_eq!(cut("短".into()), "短");
    }
}
