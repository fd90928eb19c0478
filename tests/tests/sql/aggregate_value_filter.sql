-- Aggregates with a value filter in WHERE: the rows the filter keeps are aggregated
-- (windows, sliding windows, GROUP BY LEVEL, HAVING work on them too).
CREATE DATABASE root.avf;
CREATE TIMESERIES root.avf.d1.temp WITH DATATYPE=DOUBLE, ENCODING=GORILLA;
CREATE TIMESERIES root.avf.d1.status WITH DATATYPE=BOOLEAN, ENCODING=RLE;
CREATE TIMESERIES root.avf.d1.note WITH DATATYPE=TEXT, ENCODING=PLAIN;
CREATE TIMESERIES root.avf.d2.temp WITH DATATYPE=DOUBLE, ENCODING=GORILLA;
INSERT INTO root.avf.d1(time, temp, status, note) VALUES (1, 10.0, true, 'ok'), (2, 25.0, false, 'hot'), (3, 30.0, true, 'hot');
INSERT INTO root.avf.d1(time, temp, status) VALUES (4, 5.0, true), (5, 40.0, false);
FLUSH;
INSERT INTO root.avf.d2(time, temp) VALUES (1, 50.0), (2, 15.0), (6, 60.0);
SELECT count(temp), avg(temp), max_value(temp), min_time(temp), last_value(temp) FROM root.avf.d1 WHERE temp > 8;
SELECT count(temp), sum(temp) FROM root.avf.d1 WHERE status = true;
SELECT count(note), first_value(note) FROM root.avf.d1 WHERE note LIKE 'h%';
SELECT count(temp) FROM root.avf.d1 WHERE temp > 8 AND status = false;
SELECT count(temp), max_value(temp) FROM root.avf.d1 WHERE temp > 8 GROUP BY ([0, 6), 2ms);
SELECT count(temp) FROM root.avf.d1 WHERE temp > 8 GROUP BY ([0, 6), 3ms, 2ms);
SELECT count(temp), avg(temp) FROM root.avf.* WHERE temp >= 15 GROUP BY LEVEL = 1;
SELECT count(temp) FROM root.avf.d1 WHERE temp > 8 GROUP BY ([0, 6), 2ms) HAVING count(temp) > 1;
SELECT count(temp) FROM root.avf.d1 WHERE temp > 100;
SELECT count(temp) FROM root.avf.d1 WHERE time >= 2 AND temp < 30;
SELECT count(temp) FROM root.avf.* WHERE temp > 8 ALIGN BY DEVICE;
SELECT count(temp), max_value(temp) FROM root.avf.* WHERE temp > 8 AND temp < 55 ALIGN BY DEVICE;
SELECT count(temp) FROM root.avf.* WHERE temp > 8 GROUP BY ([0, 6), 3ms) ALIGN BY DEVICE;
SELECT count(temp), count(status) FROM root.avf.* WHERE status = true ALIGN BY DEVICE;
