//! Every sentence the account says. One place, so the voice stays the same.

use crate::booking::seats::Seating;

pub const HELP: &str = "欢迎使用抢票服务！可以发送：\n\
· 绑定 —— 绑定学号（抢票前先绑定）\n\
· 抢啥 —— 看看有哪些活动可以抢\n\
· 抢票 活动代号 —— 抢一张票，例如：抢票 concert\n\
· 查票 —— 查看我的票\n\
· 退票 活动代号 —— 退掉这张票\n\
· 报名 活动代号 —— 抽签活动报名，截止后公开抽签\n\
· 候补 活动代号 —— 票抢完了就排队，有人退票按顺序补给你\n\
· 取消候补 活动代号 —— 不再排队\n\
· 解绑 —— 解除学号绑定\n\
也可以直接点下方菜单。";

pub const UNKNOWN: &str = "没看懂这条消息。发送「帮助」看看我能做什么。";
pub const BUSY: &str = "现在抢票的人太多了，请稍后再试一次。";
pub const BOOK_NEEDS_KEY: &str = "请在「抢票」后面加上活动代号，例如：抢票 concert。发送「抢啥」查看可以抢的活动。";
pub const CANCEL_NEEDS_KEY: &str = "请在「退票」后面加上活动代号，例如：退票 concert。发送「查票」查看你的票。";
pub const NO_SUCH_MENU_ACTIVITY: &str = "这个活动不存在或已下线。发送「抢啥」查看可以抢的活动。";
pub const CLOSED: &str = "这个活动的抢票已经结束了。";
pub const WAIT_NEEDS_KEY: &str = "请在「候补」后面加上活动代号，例如：候补 concert。";
pub const LEAVE_NEEDS_KEY: &str = "请在「取消候补」后面加上活动代号，例如：取消候补 concert。";
pub const WAIT_HOLDS_TICKET: &str = "你已经有这个活动的票了，不需要候补。发送「查票」查看。";
pub const WAIT_CLOSED: &str = "这个活动的抢票已经结束，候补也已截止。";
pub const NOT_WAITING: &str = "你没有在排这个活动的候补。";
pub const NOTHING_TO_CANCEL: &str = "你没有这个活动可以退的票。";
pub const ALREADY_USED: &str = "这张票已经检票入场，不能再退了。";
pub const STARTED: &str = "活动已经开始，不能再退票了。";
pub const NOT_BOUND_TO_UNBIND: &str = "你还没有绑定学号，不需要解绑。";
pub const NO_ACTIVITIES: &str = "现在没有可以抢票的活动，过几天再来看看吧。";
pub const WITHDRAW_NEEDS_KEY: &str = "请在「取消报名」后面加上活动代号，例如：取消报名 concert。";
pub const LOTTERY_CLOSED: &str = "这个抽签活动的报名已经截止了。";
pub const NOT_ENTERED: &str = "你没有报名这个抽签活动。";
pub const NO_TICKETS: &str = "你还没有票。发送「抢啥」看看有什么活动。";

pub fn link(url: &str, text: &str) -> String {
    format!("<a href=\"{url}\">{text}</a>")
}

pub fn welcome(bind_url: &str) -> String {
    format!(
        "欢迎关注！抢票前请先{}。\n发送「抢啥」看看有什么活动，发送「帮助」查看全部命令。",
        link(bind_url, "绑定学号")
    )
}

pub fn not_bound(bind_url: &str) -> String {
    format!("你还没有绑定学号，请先{}，再来抢票。", link(bind_url, "点这里绑定"))
}

pub fn bind_link(bind_url: &str) -> String {
    format!("请{}（链接 30 分钟内有效）。", link(bind_url, "点这里绑定学号"))
}

pub fn already_bound(student_id: &str) -> String {
    format!("你已绑定学号 {student_id}。如需更换，请先发送「解绑」。")
}

pub fn unbound(student_id: &str) -> String {
    format!("已解除学号 {student_id} 的绑定。已抢到的票仍然属于这个学号，重新绑定后可以继续查看。")
}

/// What the student typed, shown back at most as long as an activity key can be
/// (32 characters), so a pasted essay does not push the reply past WeChat's limit.
fn typed(key: &str) -> String {
    match key.char_indices().nth(32) {
        Some((end, _)) => format!("{}…", &key[..end]),
        None => key.to_string(),
    }
}

pub fn no_such_activity(key: &str) -> String {
    format!("没有代号为「{}」的活动。发送「抢啥」查看可以抢的活动。", typed(key))
}

/// After the `抢啥` list; `left_out` activities did not fit in it.
pub fn activities_footer(left_out: usize) -> String {
    match left_out {
        0 => "\n发送「抢票 代号」即可抢票。".into(),
        n => format!("\n还有 {n} 个活动没有列出。\n发送「抢票 代号」即可抢票。"),
    }
}

/// After the `查票` list; `left_out` tickets did not fit in it.
pub fn tickets_footer(left_out: usize, all_url: &str) -> String {
    match left_out {
        0 => format!("\n{}", link(all_url, "全部票")),
        n => format!("\n还有 {n} 张票没有列出，{}。", link(all_url, "点这里查看全部票")),
    }
}

pub fn not_open_yet(opens_at: &str) -> String {
    format!("这个活动还没开始抢票，{opens_at} 开抢，到时再来！")
}

pub fn already_holds(ticket_url: &str) -> String {
    format!("你已经有这个活动的票了，{}。", link(ticket_url, "点这里查看"))
}

pub fn booked_title(activity: &str) -> String {
    format!("抢票成功：{activity}")
}

/// A ticket's card; `seat` is its place's line (none for standing room).
pub fn booked_description(start: &str, place: &str, seat: Option<&str>, no_show_rule: bool) -> String {
    let warning = if no_show_rule { NO_SHOW_WARNING } else { "" };
    let seat = seat.map(|line| format!("\n{line}")).unwrap_or_default();
    format!("{start} · {place}{seat}\n点击查看电子票，入场时出示二维码。{warning}")
}

/// Shown with a ticket while the no-show rule is on.
pub const NO_SHOW_WARNING: &str = "不来请提前退票：多次有票不来会被暂停抢票。";

pub fn paused(until: &str) -> String {
    format!("你多次抢到票却没有到场，暂停抢票、抽签报名和候补到 {until}。有疑问请联系主办方。")
}

pub fn cancelled(activity: &str) -> String {
    format!("已退掉「{activity}」的票，名额已经释放。")
}

pub fn no_ticket_for(key: &str) -> String {
    format!("你没有「{}」的票。发送「查票」查看你的全部票。", typed(key))
}

/// Sold out: how to queue for a place someone gives back.
pub fn sold_out(key: &str) -> String {
    format!("票已经抢完了。发送「候补 {key}」排队，有人退票时按排队顺序补给候补的同学，并通知你。")
}

pub fn waiting_joined(activity: &str, position: i64) -> String {
    format!("已加入「{activity}」的候补，你排第 {position} 位。有人退票时会按顺序补票并通知你；发送「查票」可看排位。")
}

pub fn already_waiting(activity: &str, position: i64) -> String {
    match position {
        0 => format!("这个微信号已经在「{activity}」的候补里了（用之前绑定的学号），不能重复排队。"),
        n => format!("你已经在「{activity}」的候补里了，排第 {n} 位，不能重复排队。"),
    }
}

pub fn waiting_not_sold_out(key: &str) -> String {
    format!("这个活动还有票，不用候补，直接发送「抢票 {key}」。")
}

pub fn waiting_not_open(opens_at: &str) -> String {
    format!("这个活动还没开始抢票，{opens_at} 开抢；抢完后才能候补。")
}

pub fn waiting_left(activity: &str) -> String {
    format!("已退出「{activity}」的候补。")
}

/// One line of `查票` for a waiting list the student is on.
pub fn waiting_position(activity: &str, key: &str, position: i64) -> String {
    format!("\n【{activity}】候补第 {position} 位\n发送「取消候补 {key}」可退出\n")
}

/// Registered for a lottery: when it is drawn, the entry's public id and its
/// secret, which only this student is given (with it they find their eid in
/// the published draw; without it nobody can tell whose an eid is).
pub fn lottery_entered(activity: &str, key: &str, close: &str, eid: &str, secret: &str) -> String {
    format!(
        "已报名「{activity}」的抽签。{close} 报名截止后公开抽签，结果会通知你，抽中的直接出票。\n\
         你的抽签编号：{eid}\n{}发送「取消报名 {key}」可退出。",
        entry_secret(secret)
    )
}

pub fn lottery_already_entered(activity: &str, close: &str, eid: &str, secret: &str) -> String {
    format!(
        "你已经报名了「{activity}」的抽签，{close} 截止后抽签，不能重复报名。\n你的抽签编号：{eid}\n{}",
        entry_secret(secret)
    )
    .trim_end()
    .to_string()
}

/// The line that gives a registration's secret (none for an old entry that has none).
fn entry_secret(secret: &str) -> String {
    if secret.is_empty() {
        String::new()
    } else {
        format!("报名密钥（只给你，核对抽签用）：{secret}\n")
    }
}

/// A simulator test student, refused a lottery real students are in.
pub fn lottery_real_students_only(activity: &str) -> String {
    format!("「{activity}」已有真实同学报名，测试学生不能参加：测试学生只在没有真实同学报名的抽签里演练。")
}

/// A lottery's list is made by its draw; nobody joins it by hand.
pub fn waiting_lottery(key: &str) -> String {
    format!("这是抽签活动，不用候补：发送「报名 {key}」报名，没抽中的同学按抽签顺序自动候补。")
}

pub fn lottery_withdrawn(activity: &str) -> String {
    format!("已取消「{activity}」的抽签报名。")
}

/// One line of `查票` for a lottery the student registered for.
pub fn lottery_entry(activity: &str, key: &str, close: &str) -> String {
    format!("\n【{activity}】已报名，{close} 截止后抽签\n发送「取消报名 {key}」可退出\n")
}

/// What a ticket's place is called: a zone activity sells 区域, a hall 座位.
pub fn place_term(seating: Seating) -> &'static str {
    match seating {
        Seating::Zone => "区域",
        Seating::None | Seating::Seat => "座位",
    }
}

/// A ticket's place: `座位：A区 3排12座`.
pub fn placed(term: &str, label: &str) -> String {
    format!("{term}：{label}")
}

/// A ticket's card while it has no place and choosing is open.
pub fn choose_before(key: &str, deadline: &str) -> String {
    format!("还没有选座：请在 {deadline} 前发送「选座 {key}」或打开电子票选座，逾期由系统随机分配。")
}

/// A ticket without a place after the seat deadline: the clock's sweep gives it one.
pub const PLACE_BY_SYSTEM: &str = "选座已截止，座位将由系统随机分配，分好后通知你。";

/// One `查票` line for a ticket still without its place.
pub fn unplaced(key: &str, open: bool) -> String {
    if open {
        format!("未选座（发送「选座 {key}」）")
    } else {
        "未选座，将由系统随机分配".into()
    }
}

pub const CHOOSE_NOT_SEATED: &str = "这个活动不用选座，凭电子票入场即可。";
pub const CHOOSE_USED: &str = "这张票已经检票入场，不能再选座了。";
pub const NOTHING_TO_CHOOSE: &str = "你没有需要选座的票。发送「查票」查看你的票和座位。";

/// `选座 <key>` for a ticket that has its place already.
pub fn your_place(term: &str, label: &str, ticket_url: &str) -> String {
    format!("你的{term}：{label}。{}", link(ticket_url, "查看电子票"))
}

/// `选座 <key>` after the seat deadline, the ticket not yet placed by the sweep.
pub fn choosing_closed(deadline: &str) -> String {
    format!("选座已于 {deadline} 截止，系统会为你随机分配座位，分好后通知你。")
}

pub fn choose_title(activity: &str) -> String {
    format!("选座：{activity}")
}

pub fn choose_description(deadline: &str) -> String {
    format!("点击选座，请在 {deadline} 前选好，逾期由系统随机分配。每张票只能选一次。")
}

/// `选座` without a key, when more than one ticket waits for its place.
pub fn choose_which(tickets: &[(&str, &str)]) -> String {
    let lines: String =
        tickets.iter().map(|(key, activity)| format!("\n· 选座 {key}（{activity}）")).collect::<Vec<_>>().concat();
    format!("你有 {} 张票还没选座，请发送「选座 活动代号」：{lines}", tickets.len())
}
