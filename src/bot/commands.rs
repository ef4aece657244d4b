//! What a message asks for: the command table of SPEC §2.

use crate::{
    booking::tickets::ActivityRef,
    wechat::message::{Event, MassSendResult, Message, MessageKind},
};

#[derive(Debug, Clone)]
pub enum Command {
    Help,
    Bind,
    Unbind,
    ListActivities,
    /// `None`: the student typed `抢票` without saying what.
    Book(Option<ActivityRef>),
    /// `取票 <key>` names one activity; `查票` lists them all.
    MyTickets(Option<String>),
    Cancel(Option<String>),
    /// `候补 <key>`, or the menu's `WAIT_<id>` under a sold-out activity:
    /// join its waiting list.
    Wait(Option<ActivityRef>),
    /// `取消候补 <key>`: leave it.
    LeaveWaiting(Option<String>),
    /// `取消报名 <key>`: withdraw from a lottery before its draw.
    Withdraw(Option<String>),
    /// `选座 <key>`: the chooser for a zone or seat activity's ticket; without a key, the one that waits.
    ChooseSeat(Option<String>),
    Welcome,
    /// WeChat reports a 群发 done: recorded against its announcement, no answer.
    MassSendFinished(MassSendResult),
    /// Events that need no answer (`unsubscribe`, `VIEW`, …).
    Silent,
    Unknown,
}

impl Command {
    /// The command's name in the operator's counts (`/metrics`).
    pub fn name(&self) -> &'static str {
        match self {
            Command::Help => "help",
            Command::Bind => "bind",
            Command::Unbind => "unbind",
            Command::ListActivities => "list",
            Command::Book(_) => super::BOOKING,
            Command::MyTickets(_) => "tickets",
            Command::Cancel(_) => "cancel",
            Command::Wait(_) => "wait",
            Command::LeaveWaiting(_) => "leave_waiting",
            Command::Withdraw(_) => "withdraw",
            Command::ChooseSeat(_) => "seat",
            Command::Welcome => "welcome",
            Command::MassSendFinished(_) => "mass_send_finished",
            Command::Silent => "silent",
            Command::Unknown => "unknown",
        }
    }
}

/// Text commands: every word that starts a command, and what it means.
const WORDS: &[(&str, Word)] = &[
    ("帮助", Word::Help),
    ("help", Word::Help),
    ("?", Word::Help),
    ("？", Word::Help),
    ("绑定", Word::Bind),
    ("bind", Word::Bind),
    ("解绑", Word::Unbind),
    ("unbind", Word::Unbind),
    ("抢啥", Word::List),
    ("活动", Word::List),
    ("list", Word::List),
    ("抢票", Word::Book),
    ("book", Word::Book),
    // A lottery registers either way; on a first-come activity 报名 books, as 抢票 does.
    ("报名", Word::Book),
    ("取消报名", Word::Withdraw),
    ("查票", Word::Tickets),
    ("tickets", Word::Tickets),
    ("取票", Word::Tickets),
    ("退票", Word::Cancel),
    ("取消候补", Word::LeaveWaiting),
    ("候补", Word::Wait),
    ("cancel", Word::Cancel),
    ("选座", Word::Seat),
    ("seat", Word::Seat),
];

#[derive(Debug, Clone, Copy)]
enum Word {
    Help,
    Bind,
    Unbind,
    List,
    Book,
    Tickets,
    Cancel,
    Wait,
    LeaveWaiting,
    Withdraw,
    Seat,
}

pub fn parse(msg: &Message) -> Command {
    match &msg.kind {
        MessageKind::Text { content } => parse_text(content),
        MessageKind::Event(event) => parse_event(event),
        MessageKind::Other { .. } => Command::Unknown,
    }
}

fn parse_text(text: &str) -> Command {
    let text = text.trim();
    let lower = text.to_lowercase();
    for (word, meaning) in WORDS {
        let Some(rest) = lower.strip_prefix(word) else {
            continue;
        };
        // English words need a break after them ("bookx" is not "book x");
        // Chinese ones may run straight into the key ("抢票concert").
        if word.is_ascii() && rest.chars().next().is_some_and(|c| !c.is_whitespace()) {
            continue;
        }
        let arg = rest.split_whitespace().next().map(str::to_string);
        if rest.split_whitespace().count() > 1 {
            return Command::Unknown;
        }
        return match meaning {
            Word::Help => Command::Help,
            Word::Bind if arg.is_none() => Command::Bind,
            Word::Unbind if arg.is_none() => Command::Unbind,
            Word::List if arg.is_none() => Command::ListActivities,
            Word::Book => Command::Book(arg.map(ActivityRef::Key)),
            Word::Tickets => Command::MyTickets(arg),
            Word::Cancel => Command::Cancel(arg),
            Word::Wait => Command::Wait(arg.map(ActivityRef::Key)),
            Word::LeaveWaiting => Command::LeaveWaiting(arg),
            Word::Withdraw => Command::Withdraw(arg),
            Word::Seat => Command::ChooseSeat(arg),
            _ => Command::Unknown,
        };
    }
    Command::Unknown
}

fn parse_event(event: &Event) -> Command {
    match event {
        Event::Subscribe { .. } => Command::Welcome,
        Event::MassSendFinished(result) => Command::MassSendFinished(result.clone()),
        Event::Click { key } => match key.as_str() {
            "HELP" => Command::Help,
            "BIND" => Command::Bind,
            "LIST_ACTIVITIES" => Command::ListActivities,
            "MY_TICKETS" => Command::MyTickets(None),
            other => {
                let id = |prefix: &str| other.strip_prefix(prefix).and_then(|id| id.parse().ok()).map(ActivityRef::Id);
                match (id("BOOK_"), id("WAIT_")) {
                    (Some(activity), _) => Command::Book(Some(activity)),
                    (_, Some(activity)) => Command::Wait(Some(activity)),
                    _ => Command::Unknown,
                }
            }
        },
        _ => Command::Silent,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(t: &str) -> Command {
        parse_text(t)
    }

    #[test]
    fn words_in_both_languages_any_case_and_spacing() {
        assert!(matches!(text("帮助"), Command::Help));
        assert!(matches!(text("  HELP "), Command::Help));
        assert!(matches!(text("Bind"), Command::Bind));
        assert!(matches!(text("抢啥"), Command::ListActivities));
        assert!(matches!(text("活动"), Command::ListActivities));
        assert!(matches!(text("LIST"), Command::ListActivities));
        assert!(matches!(text("查票"), Command::MyTickets(None)));
        assert!(matches!(text("取票 Concert"), Command::MyTickets(Some(k)) if k == "concert"));
        assert!(matches!(text("解绑"), Command::Unbind));
        assert!(matches!(text("退票　concert"), Command::Cancel(Some(k)) if k == "concert"));
        assert!(matches!(text("cancel"), Command::Cancel(None)));
        assert!(matches!(text("候补 Concert"), Command::Wait(Some(ActivityRef::Key(k))) if k == "concert"));
        assert!(matches!(text("候补"), Command::Wait(None)));
        assert!(matches!(text("取消候补concert"), Command::LeaveWaiting(Some(k)) if k == "concert"));
        assert!(matches!(text("报名 Gala"), Command::Book(Some(ActivityRef::Key(k))) if k == "gala"));
        assert!(matches!(text("取消报名 gala"), Command::Withdraw(Some(k)) if k == "gala"));
        assert!(matches!(text("取消报名"), Command::Withdraw(None)));
        assert!(matches!(text("选座 Gala"), Command::ChooseSeat(Some(k)) if k == "gala"));
        assert!(matches!(text("选座"), Command::ChooseSeat(None)));
        assert!(matches!(text("seat gala"), Command::ChooseSeat(Some(k)) if k == "gala"));
        assert!(matches!(text("seats"), Command::Unknown));
    }

    #[test]
    fn booking_takes_a_key_with_or_without_a_space() {
        for t in ["抢票 concert", "抢票concert", "book   CONCERT", "Book concert"] {
            assert!(matches!(text(t), Command::Book(Some(ActivityRef::Key(k))) if k == "concert"), "{t}");
        }
        assert!(matches!(text("抢票"), Command::Book(None)));
        assert!(matches!(text("bookconcert"), Command::Unknown));
        assert!(matches!(text("抢票 a b"), Command::Unknown));
        assert!(matches!(text("你好"), Command::Unknown));
    }

    #[test]
    fn menu_clicks() {
        let click = |k: &str| parse_event(&Event::Click { key: k.into() });
        assert!(matches!(click("BOOK_42"), Command::Book(Some(ActivityRef::Id(42)))));
        assert!(matches!(click("BOOK_x"), Command::Unknown));
        assert!(matches!(click("WAIT_42"), Command::Wait(Some(ActivityRef::Id(42)))));
        assert!(matches!(click("WAIT_"), Command::Unknown));
        assert!(matches!(click("MY_TICKETS"), Command::MyTickets(None)));
        assert!(matches!(click("LIST_ACTIVITIES"), Command::ListActivities));
        assert!(matches!(click("BIND"), Command::Bind));
        assert!(matches!(click("HELP"), Command::Help));
        assert!(matches!(parse_event(&Event::Unsubscribe), Command::Silent));
        assert!(matches!(parse_event(&Event::View { url: "x".into() }), Command::Silent));
    }
}
