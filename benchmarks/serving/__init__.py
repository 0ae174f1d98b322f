"""The fleet serving requests through Kafka: `fleet bench run` (the load driver, the in-process engine and the raw
Kafka floor in the same run, reports and plots), `fleet bench scale` (SIMULATED engine), `fleet bench smoke`, the
time from `make up` to the first answer, and what each Kafka codec costs the fleet's records."""
