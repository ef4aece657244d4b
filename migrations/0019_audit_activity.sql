-- The activity an audit entry is about (README "Teams and roles"): an
-- organizer's audit page shows only the entries about their teams'
-- activities, filtered on this column. NULL: an account-wide entry (a login,
-- a menu push, an account change), which only admins see. Deleting an
-- activity (only one without tickets can be) keeps its entries, for admins.
ALTER TABLE audit_log ADD COLUMN activity_id bigint REFERENCES activities (id) ON DELETE SET NULL;
CREATE INDEX audit_log_activity ON audit_log (activity_id, at DESC) WHERE activity_id IS NOT NULL;

-- Older entries about an activity named it first in their detail (its key,
-- then a space or '：', or nothing), or as "活动 <id>：" for the lottery's
-- seal. A key holds neither a space nor '：' and is unique, so a match names
-- exactly one activity; the actions are those written about an activity.
UPDATE audit_log l SET activity_id = a.id
FROM activities a
WHERE l.activity_id IS NULL
  AND l.action IN ('创建活动', '修改活动', '发布活动', '归档活动', '上传海报', '导出票务名单', '预留座位',
                   '调换位置', '公布抽签公开值', '确认抽签公开值', '抽签', '创建检票链接', '吊销检票链接', '检票')
  AND (l.detail = a.key OR starts_with(l.detail, a.key || ' ') OR starts_with(l.detail, a.key || '：'));

UPDATE audit_log l SET activity_id = a.id
FROM activities a
WHERE l.activity_id IS NULL
  AND l.action = '封存抽签报名池'
  AND starts_with(l.detail, '活动 ' || a.id || '：');
