-- Expressions of aggregates in the select list (IoTDB's nested aggregate expressions):
-- evaluated on the aggregated rows, named after the expression with full paths.
CREATE DATABASE root.ae;
CREATE TIMESERIES root.ae.d1.s1 WITH DATATYPE=INT32, ENCODING=RLE;
CREATE TIMESERIES root.ae.d1.s2 WITH DATATYPE=DOUBLE, ENCODING=GORILLA;
CREATE TIMESERIES root.ae.d2.s1 WITH DATATYPE=INT32, ENCODING=RLE;
INSERT INTO root.ae.d1(time, s1, s2) VALUES (1, 1, 0.5), (2, 2, 2.0), (3, 6, -4.0), (5, 3, 1.5);
INSERT INTO root.ae.d2(time, s1) VALUES (1, 10), (4, 40);
SELECT count(s1) + 1, sum(s1) / count(s1), -max_value(s2) FROM root.ae.d1;
SELECT count(s1), ((count(s1) + 1) * 2 - 1) % 2 + 1.5, sin(avg(s2)) FROM root.ae.d1;
SELECT sum(s1) - count(*) FROM root.ae.d1;
SELECT count(s1) * 10 FROM root.ae.*;
SELECT max_value(s1) - min_value(s1) AS spread FROM root.ae.d1;
SELECT count(s1) + 1, sum(s2) FROM root.ae.d1 GROUP BY ([1, 7), 2ms);
SELECT sum(s2) * 2 FROM root.ae.d1 GROUP BY ([1, 7), 2ms) FILL(PREVIOUS);
SELECT count(s1) + 1 FROM root.ae.d1 GROUP BY ([1, 7), 2ms) HAVING count(s1) > 1;
SELECT count(s1) + 1 FROM root.ae.d1 GROUP BY ([1, 7), 2ms) ORDER BY TIME DESC LIMIT 2;
SELECT count(s1) / 2 FROM root.ae.* GROUP BY LEVEL = 1;
SELECT count(s1) + 1, sum(s1) FROM root.ae.d1 WHERE s2 > 0;
SELECT count(s1) * 10 FROM root.ae.* ALIGN BY DEVICE;
SELECT count(s1) + 1 FROM root.ae.* GROUP BY ([1, 5), 2ms) ALIGN BY DEVICE;
SELECT count(nothing) + 1 FROM root.ae.d1;
SELECT count(s1) * 10 AS x FROM root.ae.*;
SELECT count(s1) + s1 FROM root.ae.d1;
SELECT sum(s1 + 1) FROM root.ae.d1;
