-- Expressions in the select list: arithmetic, functions, cast, comparisons, wildcards.
CREATE DATABASE root.ex;
CREATE TIMESERIES root.ex.d1.s1 WITH DATATYPE=INT32, ENCODING=RLE;
CREATE TIMESERIES root.ex.d1.s2 WITH DATATYPE=DOUBLE, ENCODING=GORILLA;
CREATE TIMESERIES root.ex.d1.t WITH DATATYPE=TEXT, ENCODING=PLAIN;
CREATE TIMESERIES root.ex.d2.s1 WITH DATATYPE=INT32, ENCODING=RLE;
INSERT INTO root.ex.d1(time, s1, s2, t) VALUES (1, 1, 0.5, '10'), (2, -2, 2.0, 'x'), (3, 3, null, '7.9');
INSERT INTO root.ex.d1(time, s2) VALUES (4, 4.0);
INSERT INTO root.ex.d2(time, s1) VALUES (1, 100), (4, 400);
SELECT s1, s1 + 1, s1 * s2, -s2, (s1 + s2) / 2, s1 % 2 FROM root.ex.d1;
SELECT abs(s1), sin(s2), sqrt(s2), round(s2) FROM root.ex.d1;
SELECT cast(s1 AS DOUBLE), cast(s2 AS INT32), cast(t AS INT64), cast(s1 AS TEXT), cast(s1 AS BOOLEAN) FROM root.ex.d1;
SELECT s1 > 0, s2 >= 2 AND s1 < 0 FROM root.ex.d1;
SELECT s1 + 1 FROM root.ex.*;
SELECT s1 * 10 AS tenfold FROM root.ex.d1 WHERE s2 > 1;
SELECT s1 + 1, s2 FROM root.ex.d1 ORDER BY TIME DESC LIMIT 2;
SELECT s1 + 1 AS x FROM root.ex.*;
SELECT nothing + 1, s1 - 1 FROM root.ex.d1;
SELECT cast(s1 AS DATE) FROM root.ex.d1;
SELECT count(s1) + 1 FROM root.ex.d1;
SELECT s1 + 1 FROM root.ex.d1 ALIGN BY DEVICE;
SELECT s1 + 1, s1 * s2, cast(s1 AS TEXT) FROM root.ex.* ALIGN BY DEVICE;
SELECT s1 - 1 AS m, s2 FROM root.ex.* WHERE s1 > 0 ALIGN BY DEVICE;
SELECT * + 1 FROM root.ex.* WHERE time <= 2 ALIGN BY DEVICE;
SELECT s1 + 1 FROM root.ex.* ORDER BY TIME DESC LIMIT 3 ALIGN BY DEVICE;
-- IoTDB's result types: unary minus and abs keep the operand's type, the other functions are DOUBLE.
SELECT -s1, abs(s1), sign(s1), ceil(s2), floor(s2), -s2 FROM root.ex.d1;
SELECT asin(s2 / 4), acos(s2 / 4), atan(s2), sinh(s2), cosh(s2), tanh(s2), degrees(s2), radians(s2) FROM root.ex.d1;
-- round is Math.rint(x * 10^places) / 10^places: halves go to the even neighbour.
SELECT round(s2), round(s2, 1), round(s2 * 25, -1), round(s1 / 4, 1) FROM root.ex.d1;
SELECT round(s2, 1.5) FROM root.ex.d1;
SELECT abs(s1) FROM root.ex.* WHERE abs(s1) > 2 AND s1 IS NOT NULL;
