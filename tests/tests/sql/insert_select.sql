-- INSERT creates series with IoTDB's inferred types; SELECT raw, patterns, time filters.
CREATE DATABASE root.ln;
INSERT INTO root.ln.d1(time, s1, s2, s3) VALUES (1, 1, 1.5, 'a'), (2, 2, 2.5, 'b'), (3, 3, 3.5, 'c');
insert into root.ln.d1(time, s4) values (2, true);
INSERT INTO root.ln.d2(time, s1) VALUES (2024-01-01T00:00:00.000Z, 10), (2024-01-01T01:00:00, 20);
SHOW TIMESERIES root.ln.**;
SELECT s1, s2 FROM root.ln.d1;
SELECT * FROM root.ln.d1;
SELECT s1 FROM root.ln.*;
SELECT ** FROM root.ln;
SELECT s1 FROM root.ln.d1 WHERE time >= 2 AND time < 3;
SELECT s1 FROM root.ln.d1 WHERE time > 1 LIMIT 1;
SELECT s1 FROM root.ln.d1 LIMIT 2 OFFSET 1;
SELECT s1 FROM root.ln.d1 ORDER BY TIME DESC LIMIT 2;
SELECT s1 FROM root.ln.d2 WHERE time >= 2024-01-01T00:30:00Z;
-- Existing series keep their type; the same time again overwrites.
INSERT INTO root.ln.d1(time, s1) VALUES (1, 100);
SELECT s1 FROM root.ln.d1 WHERE time <= 1;
CREATE TIMESERIES root.ln.d3.i WITH DATATYPE=INT32, ENCODING=RLE;
INSERT INTO root.ln.d3(time, i) VALUES (5, 7);
SELECT i FROM root.ln.d3;
-- A value that does not fit its series is left out and reported (IoTDB's partial insert);
-- the statement's other values are written.
INSERT INTO root.ln.d3(time, i, fresh) VALUES (6, 'text', 1);
SELECT * FROM root.ln.d3;
INSERT INTO root.ln.d3(time, i) VALUES (7, 3000000000);
SELECT nope FROM root.ln.d1;
SELECT s1 FROM root.nowhere.d;
SELEC s1 FROM root.ln.d1;
SELECT s1 FROM root.ln.d1 WHERE;
FLUSH;
SELECT s1, s3 FROM root.ln.d1;
