-- A device whose path is its database (IoTDB accepts it for writes, queries, deletions).
CREATE DATABASE root.vehicle.d0;
INSERT INTO root.vehicle.d0(timestamp, s0) VALUES (1, 101);
INSERT INTO root.vehicle.d0(timestamp, s0, s1) VALUES (2, 102, 'x'), (700000000000, 103, 'y');
SELECT * FROM root.vehicle.d0;
SELECT count(s0), sum(s0) FROM root.vehicle.d0;
SELECT LAST s0 FROM root.vehicle.d0;
FLUSH;
DELETE FROM root.vehicle.d0.s0 WHERE time <= 1;
SELECT s0 FROM root.vehicle.d0;
SET STORAGE GROUP TO root.ln.wf01.wt01;
CREATE TIMESERIES root.ln.wf01.wt01.status WITH DATATYPE=BOOLEAN, ENCODING=PLAIN;
INSERT INTO root.ln.wf01.wt01(timestamp, status) VALUES (1, true);
SELECT status FROM root.ln.wf01.wt01;
SHOW DEVICES root.vehicle.**;
-- A query that matches no series: an empty result with its header.
SELECT * FROM root.sg1.d1;
SELECT s1 FROM root.vehicle.d0.nope;
SELECT LAST s1 FROM root.sg.d1;
SELECT LAST * FROM root.nothing;
SELECT count(s9) FROM root.vehicle.d0;
SELECT count(s9) FROM root.vehicle.d0 GROUP BY ([0, 10), 5ms);
-- Encodings each type accepts (IoTDB's table).
CREATE TIMESERIES root.vehicle.d0.b WITH DATATYPE=BOOLEAN, ENCODING=TS_2DIFF;
CREATE TIMESERIES root.vehicle.d0.d WITH DATATYPE=DOUBLE, ENCODING=REGULAR;
CREATE TIMESERIES root.vehicle.d0.t WITH DATATYPE=TEXT, ENCODING=TS_2DIFF;
CREATE TIMESERIES root.vehicle.d0.i WITH DATATYPE=INT32, ENCODING=ZIGZAG;
CREATE TIMESERIES root.vehicle.d0.f WITH DATATYPE=FLOAT, ENCODING=GORILLA_V1;
CREATE TIMESERIES root.vehicle.d0.l WITH DATATYPE=INT64, ENCODING=GORILLA_V1;
-- Partial insertion (enable_partial_insert = true, the default): the value that fits is
-- written, the one that does not is reported (IoTDBPartialInsertionIT).
CREATE DATABASE root.sg1;
CREATE TIMESERIES root.sg1.d1.s1 WITH DATATYPE=TEXT;
CREATE TIMESERIES root.sg1.d1.s2 WITH DATATYPE=DOUBLE;
INSERT INTO root.sg1.d1(time, s1, s2) VALUES (100, 'test', 'test');
INSERT INTO root.sg1.d1(time, s1, s2) VALUES (101, 'a', 1.5), (102, 'b', 'bad'), (103, 'c', 3);
SELECT s1, s2 FROM root.sg1.d1;
