-- DELETE FROM: memtable, sealed files, aggregates, LAST, and later writes.
CREATE DATABASE root.del;
INSERT INTO root.del.d(time, s, k) VALUES (1, 1, 1), (2, 2, 2), (3, 3, 3), (4, 4, 4), (5, 5, 5);
DELETE FROM root.del.d.s WHERE time < 3;
SELECT s, k FROM root.del.d;
FLUSH;
DELETE FROM root.del.d.s WHERE time >= 5;
SELECT s FROM root.del.d;
SELECT count(s), sum(s), first_value(s), last_value(s) FROM root.del.d;
SELECT LAST s FROM root.del.d;
-- Points written after a deletion are not affected by it.
INSERT INTO root.del.d(time, s) VALUES (1, 100);
SELECT s FROM root.del.d;
DELETE FROM root.del.d.* WHERE time <= 4;
SELECT * FROM root.del.d;
DELETE FROM root.del.**;
SELECT count(*) FROM root.del.d;
-- Errors.
DELETE FROM root.del.d.nope WHERE time < 10;
DELETE FROM root.del.d.s WHERE tim < 10;
