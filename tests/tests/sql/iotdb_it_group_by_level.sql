-- IoTDB's integration test IoTDBAggregationByLevelIT (apache/iotdb integration-test/
-- .../db/it/aggregation/IoTDBAggregationByLevelIT.java), reproduced with its data.
-- Expected answers from the IT: sumFuncGroupByLevelTest 243.410, 380.460, 623.870, then
-- root.sg1.d1 91.83 and root.sg1.d2 151.58; avgFuncGroupByLevelTest 48.682, 95.115, 69.319,
-- 45.915, 50.527 (both to 0.001); timeFuncGroupByLevelTest "5,3,100,200" (count of
-- root.*.d1.status, root.*.d2.status, min_time of root.*.d1.temperature,
-- root.*.d2.temperature), "600,700,2,3", "600,700,500"; valueFuncGroupByLevelTest
-- "61.22,125.5" and "71.12,62.15,71.12,62.15"; countStarGroupByLevelTest 17, 17, 8;
-- groupByLevelWithAliasTest 5, 5, 5.
SET STORAGE GROUP TO root.sg1;
SET STORAGE GROUP TO root.sg2;
CREATE TIMESERIES root.sg1.d1.status WITH DATATYPE=BOOLEAN, ENCODING=PLAIN;
CREATE TIMESERIES root.sg1.d1.temperature WITH DATATYPE=DOUBLE, ENCODING=PLAIN;
CREATE TIMESERIES root.sg1.d2.status WITH DATATYPE=BOOLEAN, ENCODING=PLAIN;
CREATE TIMESERIES root.sg1.d2.temperature WITH DATATYPE=DOUBLE, ENCODING=PLAIN;
CREATE TIMESERIES root.sg2.d1.status WITH DATATYPE=INT32, ENCODING=PLAIN;
CREATE TIMESERIES root.sg2.d1.temperature WITH DATATYPE=DOUBLE, ENCODING=PLAIN;
CREATE TIMESERIES root.sg2.d2.temperature WITH DATATYPE=DOUBLE, ENCODING=PLAIN;
INSERT INTO root.sg1.d1(timestamp,status) values(150,true);
INSERT INTO root.sg1.d1(timestamp,status,temperature) values(200,false,20.71);
INSERT INTO root.sg1.d1(timestamp,status,temperature) values(600,false,71.12);
INSERT INTO root.sg1.d2(timestamp,status,temperature) values(200,false,42.66);
INSERT INTO root.sg1.d2(timestamp,status,temperature) values(300,false,46.77);
INSERT INTO root.sg1.d2(timestamp,status,temperature) values(700,true,62.15);
INSERT INTO root.sg2.d1(timestamp,status,temperature) values(100,3,88.24);
INSERT INTO root.sg2.d1(timestamp,status,temperature) values(500,5,125.5);
INSERT INTO root.sg2.d2(timestamp,temperature) values(200,105.5);
INSERT INTO root.sg2.d2(timestamp,temperature) values(800,61.22);
select sum(temperature), sum(temperature) from root.sg1.* GROUP BY level=1;
select sum(temperature) from root.sg2.* GROUP BY level=1;
select sum(temperature) from root.*.* GROUP BY level=0;
select sum(temperature) from root.sg1.* GROUP BY level=1,2;
select avg(temperature) from root.sg1.* GROUP BY level=1;
select avg(temperature) from root.sg2.* GROUP BY level=1;
select avg(temperature) from root.*.* GROUP BY level=0;
select avg(temperature) from root.sg1.* GROUP BY level=1, 2;
select count(status), min_time(temperature) from root.*.* GROUP BY level=2;
select max_time(status), count(temperature) from root.sg1.* GROUP BY level=2;
select max_time(status) from root.*.* GROUP BY level=1, 2;
select last_value(temperature), max_value(temperature) from root.*.* GROUP BY level=0;
select last_value(temperature), max_value(temperature) from root.sg1.* GROUP BY level=2;
select count(*) from root.*.* GROUP BY level=0;
select count(**) from root GROUP BY level=0;
select count(status) from root.*.* GROUP BY level=0;
select count(temperature) as ct from root.sg1.d1, root.sg1.d2 GROUP BY level=1;
select count(temperature) as ct from root.sg1.* GROUP BY level=1;
select count(*) as ct from root.sg1.d1 GROUP BY level=0;
