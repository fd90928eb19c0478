-- IoTDB's integration tests, reproduced with their data and expected answers:
-- IOTDBGroupByIT (apache/iotdb integration-test/.../db/it/groupby/IOTDBGroupByIT.java):
-- tumbling and sliding windows, with time and value filters, over a device that is its
-- own database (CREATE DATABASE root.ln.wf01.wt01). Expected rows from the IT, as
-- time,count,sum,avg: countSumAvgTest1 "5,3,35.8,11.933333333333332" "25,2,70.7,35.35"
-- "45,1,50.5,50.5" "65,0,null,null" "85,1,100.1,100.1" "105,0" "125,0" "145,1,200.2,200.2";
-- countSumAvgInnerIntervalTest (sliding, 5ms every 30ms): "0,2,7.7,3.85" "30,1,30.3,30.3"
-- then count 0 except "150,1,200.2" "300,1,500.5" "510,1,200.2" "540,1,500.5"; useLimitTest:
-- "90,0" "120,0" "150,1,200.2,200.2" "180,0" "210,0"; largeIntervalTest1 (time,min_value,
-- count,max_time,min_time): "0,4.4,12,300,4" "340,100.1,10,620,500"; countSumAvgZeroTest:
-- "1500,2,0.0,0.0"; firstLastTest1 (last,first): "2,5.5,4.4" "6,null" "10,10.1,10.1"
-- "14,null" "18,20.2,20.2" "22,null" "26,null"; noDataRegionTest: "1,0,null" "2,0,null".
-- The IT runs each with ORDER BY TIME DESC too (resultSetEqualWithDescOrderTest).
CREATE DATABASE root.ln.wf01.wt01;
CREATE TIMESERIES root.ln.wf01.wt01.status WITH DATATYPE=BOOLEAN, ENCODING=PLAIN;
CREATE TIMESERIES root.ln.wf01.wt01.temperature WITH DATATYPE=DOUBLE, ENCODING=PLAIN;
CREATE TIMESERIES root.ln.wf01.wt01.hardware WITH DATATYPE=INT32, ENCODING=PLAIN;
CREATE TIMESERIES root.test.noDataRegion.s1 WITH DATATYPE=INT32;
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(1, 1.1, false, 11);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(2, 2.2,  true, 22);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(3, 3.3, false, 33 );
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(4, 4.4, false, 44);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(5, 5.5, false, 55);
flush;
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(10, 10.1, false, 110);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(20, 20.2,  true, 220);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(30, 30.3, false, 330 );
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(40, 40.4, false, 440);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(50, 50.5, false, 550);
flush;
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(100, 100.1, false, 110);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(150, 200.2,  true, 220);
flush;
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(200, 300.3, false, 330 );
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(250, 400.4, false, 440);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(300, 500.5, false, 550);
flush;
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(500, 100.1, false, 110);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(510, 200.2,  true, 220);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(520, 300.3, false, 330 );
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(530, 400.4, false, 440);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(540, 500.5, false, 550);
flush;
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(580, 100.1, false, 110);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(590, 200.2,  true, 220);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(600, 300.3, false, 330 );
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(610, 400.4, false, 440);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(620, 500.5, false, 550);
flush;
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(1500, 23.3, false, 666);
INSERT INTO root.ln.wf01.wt01(timestamp, temperature, status, hardware) values(1550, -23.3, true, 888);
flush;
select count(temperature), sum(temperature), avg(temperature) from root.ln.wf01.wt01 where time > 3 GROUP BY ([5, 160), 20ms);
select count(temperature), sum(temperature), avg(temperature) from root.ln.wf01.wt01 where time > 3 GROUP BY ([5, 160), 20ms) order by time desc;
select count(temperature), sum(temperature), avg(temperature) from root.ln.wf01.wt01 where temperature > 3 GROUP BY ([0, 600), 5ms, 30ms);
select count(temperature), sum(temperature), avg(temperature) from root.ln.wf01.wt01 where temperature > 3 GROUP BY ([0, 600), 5ms, 30ms) order by time desc;
select count(temperature), sum(temperature), avg(temperature) from root.ln.wf01.wt01 where temperature > 3 GROUP BY ([0, 600), 5ms, 30ms) limit 5 offset 3;
select min_value(temperature), count(temperature), max_time(temperature), min_time(temperature) from root.ln.wf01.wt01 where time > 3 GROUP BY ([0, 680), 340ms);
select count(temperature), sum(temperature), avg(temperature) from root.ln.wf01.wt01 GROUP BY ([1500, 1600), 100ms);
select last_value(temperature), first_value(temperature) from root.ln.wf01.wt01 where time > 3 GROUP BY ([2,30), 4ms);
select count(s1), sum(s1) from root.test.noDataRegion GROUP BY ([1, 3), 1ms);
