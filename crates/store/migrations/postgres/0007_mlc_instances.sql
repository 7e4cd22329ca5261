-- The numbers of the deployment's Multi-Line Controller instances (each
-- node's in-process MLC and each connection of a `turret mlc`): an MLC's
-- call ids start at its number times 2^40, so a call id names one call
-- across every node (issue 19: a turret on one node works the calls of
-- another). Cycles below 8192 so ids stay under 2^53 (JavaScript's
-- exact integers).
CREATE SEQUENCE mlc_instances AS BIGINT MINVALUE 1 MAXVALUE 8191 CYCLE;
