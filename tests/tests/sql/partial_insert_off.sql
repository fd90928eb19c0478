-- config: enable_partial_insert = false
-- With partial insertion off, one value that does not fit refuses the whole statement.
CREATE DATABASE root.sg1;
CREATE TIMESERIES root.sg1.d1.s1 WITH DATATYPE=TEXT;
CREATE TIMESERIES root.sg1.d1.s2 WITH DATATYPE=DOUBLE;
INSERT INTO root.sg1.d1(time, s1, s2) VALUES (100, 'test', 'test');
INSERT INTO root.sg1.d1(time, s1, s2) VALUES (101, 'a', 1.5);
SELECT s1, s2 FROM root.sg1.d1;
