//! Integration tests: the real server over HTTP on a real PostgreSQL.
//! One test binary, so the whole suite shares one throwaway cluster.

mod common;

mod admin_console;
mod admin_login;
mod bad_day;
mod browser;
mod cas_binding;
mod checkin_export;
mod connection_burst;
mod demo;
mod door;
mod door_browser;
mod door_chart;
mod fair_admin;
mod hardening;
mod hostile_inputs;
mod housekeeping;
mod landing;
mod layers;
mod live_qr;
mod lottery;
mod lottery_browser;
mod lottery_trust;
mod menu_page;
mod no_show;
mod notifications;
mod oauth_browser;
mod oauth_pages;
mod rush;
mod seats;
mod seats_admin;
mod seats_browser;
mod seats_chooser;
mod seats_display;
mod seats_door;
mod self_contained_binary;
mod serve_binary;
mod simulator;
mod student_journey;
mod teams;
mod trust;
mod waiting_list;
mod wechat_api;
mod wechat_endpoint;
mod wechat_scan;
