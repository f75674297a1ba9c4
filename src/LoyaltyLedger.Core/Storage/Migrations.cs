using Dapper;

namespace LoyaltyLedger.Storage;

/// <summary>
/// Versioned schema migrations, applied in order at start-up. A migration is never edited once
/// released; a change is a new entry at the end.
/// </summary>
/// <remarks>
/// Schema for hundreds of millions of entries: every table carries <c>org_id</c>, every posting and
/// every read touches one organization's and one owner's rows, and no table has a foreign key across
/// owners, so the tables can be distributed by (org_id, owner) later. Timestamps are Unix
/// milliseconds (UTC) in 64-bit integers, and points are 64-bit thousandths, on both databases.
/// </remarks>
public static class Migrations
{
    public static readonly IReadOnlyList<(int Version, string Name, string Sql)> All =
    [
        (1, "ledger core", """
        CREATE TABLE organizations (
            org_id {identity},
            name text NOT NULL,
            created_at bigint NOT NULL
        );
        CREATE TABLE api_keys (
            key_id text PRIMARY KEY,
            org_id bigint NOT NULL,
            secret_hash text NOT NULL,
            role text NOT NULL,
            name text NULL,
            created_at bigint NOT NULL,
            revoked_at bigint NULL
        );
        CREATE INDEX ix_api_keys_org ON api_keys (org_id);
        CREATE TABLE id_counters (
            org_id bigint NOT NULL,
            name text NOT NULL,
            last_value bigint NOT NULL,
            PRIMARY KEY (org_id, name)
        );
        CREATE TABLE programs (
            org_id bigint NOT NULL,
            program_id bigint NOT NULL,
            name text NOT NULL,
            concept text NULL,
            earn_per_unit bigint NOT NULL,
            allow_negative_balance smallint NOT NULL,
            expiry_policy text NOT NULL,
            is_default smallint NOT NULL,
            created_at bigint NOT NULL,
            PRIMARY KEY (org_id, program_id)
        );
        CREATE TABLE currencies (
            org_id bigint NOT NULL,
            currency_id bigint NOT NULL,
            program_id bigint NOT NULL,
            name text NOT NULL,
            earn_per_unit bigint NOT NULL,
            expiry_policy text NOT NULL,
            created_at bigint NOT NULL,
            PRIMARY KEY (org_id, currency_id),
            CONSTRAINT ux_currencies_name UNIQUE (org_id, program_id, name)
        );
        CREATE TABLE stores (
            org_id bigint NOT NULL,
            store_id bigint NOT NULL,
            code text NOT NULL,
            name text NOT NULL,
            concept text NULL,
            created_at bigint NOT NULL,
            PRIMARY KEY (org_id, store_id),
            CONSTRAINT ux_stores_code UNIQUE (org_id, code)
        );
        CREATE TABLE tills (
            org_id bigint NOT NULL,
            till_id bigint NOT NULL,
            store_id bigint NOT NULL,
            code text NOT NULL,
            name text NOT NULL,
            concept text NULL,
            created_at bigint NOT NULL,
            PRIMARY KEY (org_id, till_id),
            CONSTRAINT ux_tills_code UNIQUE (org_id, code)
        );
        CREATE TABLE customers (
            org_id bigint NOT NULL,
            customer_id bigint NOT NULL,
            first_name text NULL,
            last_name text NULL,
            external_id text NULL,
            email text NULL,
            mobile text NULL,
            entity_type text NOT NULL,
            created_at bigint NOT NULL,
            PRIMARY KEY (org_id, customer_id)
        );
        CREATE TABLE customer_identifiers (
            org_id bigint NOT NULL,
            source text NOT NULL,
            account_id text NOT NULL,
            kind text NOT NULL,
            value text NOT NULL,
            customer_id bigint NOT NULL,
            CONSTRAINT ux_customer_identifiers PRIMARY KEY (org_id, source, account_id, kind, value)
        );
        CREATE INDEX ix_customer_identifiers_customer ON customer_identifiers (org_id, customer_id);
        CREATE TABLE loyalty_accounts (
            org_id bigint NOT NULL,
            account_number text NOT NULL,
            customer_id bigint NOT NULL,
            status text NOT NULL,
            created_at bigint NOT NULL,
            CONSTRAINT ux_loyalty_accounts PRIMARY KEY (org_id, account_number)
        );
        CREATE INDEX ix_loyalty_accounts_customer ON loyalty_accounts (org_id, customer_id);
        CREATE TABLE user_groups (
            org_id bigint NOT NULL,
            group_id bigint NOT NULL,
            external_id text NULL,
            name text NOT NULL,
            primary_customer_id bigint NOT NULL,
            max_members integer NOT NULL,
            pools_points smallint NOT NULL,
            created_at bigint NOT NULL,
            PRIMARY KEY (org_id, group_id),
            CONSTRAINT ux_user_groups_external UNIQUE (org_id, external_id)
        );
        CREATE TABLE group_members (
            org_id bigint NOT NULL,
            group_id bigint NOT NULL,
            customer_id bigint NOT NULL,
            role text NOT NULL,
            may_redeem smallint NOT NULL,
            may_transfer smallint NOT NULL,
            joined_at bigint NOT NULL,
            CONSTRAINT ux_group_members PRIMARY KEY (org_id, group_id, customer_id)
        );
        CREATE UNIQUE INDEX ux_group_members_customer ON group_members (org_id, customer_id);
        CREATE TABLE wallets (
            wallet_id {identity},
            org_id bigint NOT NULL,
            owner_type text NOT NULL,
            owner_id bigint NOT NULL,
            program_id bigint NOT NULL,
            currency_id bigint NOT NULL,
            category text NOT NULL,
            balance bigint NOT NULL,
            updated_at bigint NOT NULL,
            CONSTRAINT ux_wallets UNIQUE (org_id, owner_type, owner_id, program_id, currency_id, category)
        );
        CREATE TABLE events (
            event_id {identity},
            org_id bigint NOT NULL,
            owner_type text NOT NULL,
            owner_id bigint NOT NULL,
            customer_id bigint NOT NULL,
            event_name text NOT NULL,
            display_name text NULL,
            created_at bigint NOT NULL,
            source_program_id bigint NULL,
            store_id bigint NULL,
            till_id bigint NULL,
            bill_id bigint NULL,
            details text NULL,
            reason text NULL,
            posted_by text NULL,
            related_event_id bigint NULL
        );
        CREATE INDEX ix_events_owner ON events (org_id, owner_type, owner_id, created_at, event_id);
        CREATE TABLE ledger_entries (
            entry_id {identity},
            org_id bigint NOT NULL,
            event_id bigint NOT NULL,
            wallet_id bigint NOT NULL,
            owner_type text NOT NULL,
            owner_id bigint NOT NULL,
            program_id bigint NOT NULL,
            currency_id bigint NOT NULL,
            category text NOT NULL,
            entry_type text NOT NULL,
            points bigint NOT NULL,
            balance_after bigint NOT NULL,
            created_at bigint NOT NULL
        );
        CREATE INDEX ix_ledger_entries_event ON ledger_entries (event_id);
        CREATE INDEX ix_ledger_entries_wallet ON ledger_entries (wallet_id, entry_id);
        CREATE TABLE lots (
            lot_id {identity},
            org_id bigint NOT NULL,
            wallet_id bigint NOT NULL,
            credit_entry_id bigint NULL,
            earned_at bigint NOT NULL,
            expires_at bigint NULL,
            original bigint NOT NULL,
            remaining bigint NOT NULL,
            is_debt smallint NOT NULL
        );
        CREATE INDEX ix_lots_open ON lots (wallet_id, expires_at, lot_id) WHERE remaining <> 0;
        CREATE INDEX ix_lots_entry ON lots (credit_entry_id);
        CREATE TABLE lot_movements (
            movement_id {identity},
            org_id bigint NOT NULL,
            entry_id bigint NOT NULL,
            lot_id bigint NOT NULL,
            points bigint NOT NULL
        );
        CREATE INDEX ix_lot_movements_entry ON lot_movements (entry_id);
        CREATE INDEX ix_lot_movements_lot ON lot_movements (lot_id);
        CREATE TABLE bills (
            bill_id {identity},
            org_id bigint NOT NULL,
            store_id bigint NOT NULL,
            till_id bigint NULL,
            bill_number text NOT NULL,
            customer_id bigint NOT NULL,
            amount bigint NOT NULL,
            gross_amount bigint NOT NULL,
            bill_date bigint NOT NULL,
            source text NOT NULL,
            event_id bigint NOT NULL,
            created_at bigint NOT NULL,
            CONSTRAINT ux_bills_number UNIQUE (org_id, store_id, bill_number)
        );
        CREATE INDEX ix_bills_customer ON bills (org_id, customer_id);
        CREATE TABLE idempotency_keys (
            org_id bigint NOT NULL,
            idempotency_key text NOT NULL,
            request_hash text NOT NULL,
            status_code integer NOT NULL,
            response_body text NULL,
            created_at bigint NOT NULL,
            CONSTRAINT ux_idempotency_keys PRIMARY KEY (org_id, idempotency_key)
        );
        """),
        (2, "points-ledger read indexes", """
        CREATE INDEX ix_ledger_entries_event_filter ON ledger_entries (event_id, currency_id, category, entry_type, program_id);
        CREATE INDEX ix_ledger_entries_wallet_time ON ledger_entries (wallet_id, created_at, entry_id);
        """),
        (3, "loyalty vault: vouchers and receipts", """
        CREATE TABLE voucher_definitions (
            org_id bigint NOT NULL,
            voucher_id bigint NOT NULL,
            program_id bigint NOT NULL,
            name text NOT NULL,
            price bigint NOT NULL,
            valid_days integer NULL,
            uses integer NOT NULL,
            created_at bigint NOT NULL,
            PRIMARY KEY (org_id, voucher_id)
        );
        CREATE INDEX ix_voucher_definitions_program ON voucher_definitions (org_id, program_id, voucher_id);
        CREATE TABLE voucher_instances (
            org_id bigint NOT NULL,
            serial_id text NOT NULL,
            voucher_id bigint NOT NULL,
            program_id bigint NOT NULL,
            customer_id bigint NOT NULL,
            account_number text NOT NULL,
            price bigint NOT NULL,
            valid_from bigint NOT NULL,
            expires_at bigint NULL,
            uses_total integer NOT NULL,
            uses_left integer NOT NULL,
            purchase_event_id bigint NOT NULL,
            created_at bigint NOT NULL,
            CONSTRAINT ux_voucher_instances PRIMARY KEY (org_id, serial_id)
        );
        CREATE INDEX ix_voucher_instances_customer ON voucher_instances (org_id, customer_id, program_id);
        CREATE TABLE vault_receipts (
            org_id bigint NOT NULL,
            shop_id text NOT NULL,
            pos_id text NOT NULL,
            receipt_nr text NOT NULL,
            account_number text NOT NULL,
            request_hash text NOT NULL,
            response_body text NULL,
            created_at bigint NOT NULL,
            CONSTRAINT ux_vault_receipts PRIMARY KEY (org_id, shop_id, pos_id, receipt_nr)
        );
        CREATE TABLE vault_account_expiry (
            org_id bigint NOT NULL,
            account_number text NOT NULL,
            expires_at bigint NOT NULL,
            updated_at bigint NOT NULL,
            CONSTRAINT ux_vault_account_expiry PRIMARY KEY (org_id, account_number)
        );
        """),
        (4, "points lifecycle", """
        ALTER TABLE wallets ADD COLUMN last_activity_at bigint NULL;
        ALTER TABLE bills ADD COLUMN returned_amount bigint NOT NULL DEFAULT 0;
        ALTER TABLE programs ADD COLUMN promised_days integer NULL;
        ALTER TABLE events ADD COLUMN external_reference text NULL;
        CREATE INDEX ix_events_external_reference ON events (org_id, external_reference);
        CREATE INDEX ix_events_related ON events (org_id, related_event_id);
        CREATE INDEX ix_lots_due ON lots (expires_at) WHERE remaining > 0 AND is_debt = 0;
        CREATE TABLE redemption_reversals (
            org_id bigint NOT NULL,
            redemption_event_id bigint NOT NULL,
            reversal_event_id bigint NOT NULL,
            lot_id bigint NOT NULL,
            points bigint NOT NULL
        );
        CREATE INDEX ix_redemption_reversals ON redemption_reversals (org_id, redemption_event_id);
        """),
        (5, "performance: identifier lookup and wallet lot indexes", """
        CREATE INDEX ix_customer_identifiers_lookup ON customer_identifiers (org_id, kind, value);
        CREATE INDEX ix_lots_wallet ON lots (wallet_id, is_debt, expires_at, lot_id);
        """),
        (6, "write audit", """
        CREATE TABLE write_audit (
            audit_id {identity},
            org_id bigint NOT NULL,
            key_id text NOT NULL,
            method text NOT NULL,
            path text NOT NULL,
            status_code integer NOT NULL,
            idempotency_key text NULL,
            created_at bigint NOT NULL
        );
        CREATE INDEX ix_write_audit_org ON write_audit (org_id, created_at);
        CREATE INDEX ix_write_audit_key ON write_audit (org_id, key_id, created_at);
        """),
        (7, "event line kinds", """
        ALTER TABLE events ADD COLUMN line_kinds integer NOT NULL DEFAULT 0;
        UPDATE events SET line_kinds =
            (CASE WHEN EXISTS (SELECT 1 FROM ledger_entries le WHERE le.event_id = events.event_id AND le.currency_id = 0) THEN 1 ELSE 0 END)
          + (CASE WHEN EXISTS (SELECT 1 FROM ledger_entries le WHERE le.event_id = events.event_id AND le.currency_id <> 0) THEN 2 ELSE 0 END);
        DROP INDEX ix_events_owner;
        CREATE INDEX ix_events_owner ON events (org_id, owner_type, owner_id, created_at, event_id, line_kinds);
        """),
        (8, "drop a redundant index", """
        -- ix_ledger_entries_event_filter (migration 2) starts with event_id and serves every lookup
        -- this one did; keeping both only made each ledger line cost one more index write.
        DROP INDEX ix_ledger_entries_event;
        """),
        (9, "owner event counts", """
        -- Each owner's running count of events, and of events holding plain-points lines (line_kinds
        -- bit 1) and alternate-currency lines (bit 2), kept by Posting in the posting's transaction:
        -- the points-ledger read takes an unfiltered query's totalEntries from this one row instead of
        -- counting the owner's whole history. The backfill makes an upgraded database correct at once.
        CREATE TABLE owner_event_counts (
            org_id bigint NOT NULL,
            owner_type text NOT NULL,
            owner_id bigint NOT NULL,
            events bigint NOT NULL,
            points_events bigint NOT NULL,
            currency_events bigint NOT NULL,
            CONSTRAINT ux_owner_event_counts PRIMARY KEY (org_id, owner_type, owner_id)
        );
        INSERT INTO owner_event_counts (org_id, owner_type, owner_id, events, points_events, currency_events)
        SELECT org_id, owner_type, owner_id, COUNT(*),
            SUM(CASE WHEN (line_kinds & 1) <> 0 THEN 1 ELSE 0 END),
            SUM(CASE WHEN (line_kinds & 2) <> 0 THEN 1 ELSE 0 END)
        FROM events
        GROUP BY org_id, owner_type, owner_id;
        """),
        // The vault history merges a wallet's lines with the customer's voucher redemptions (which
        // move no points, so have no lines). Without this index that branch read every event of the
        // customer to find the few redemptions: 13 ms for a 32,000-event customer, on every page.
        // Partial, so only voucher redemptions pay for it on write.
        (10, "vault: voucher redemptions index", """
        CREATE INDEX ix_events_voucher_redemptions ON events (org_id, owner_type, owner_id, source_program_id, created_at, event_id)
            WHERE event_name = 'VoucherRedemption';
        """),
        // A wallet's lines in time order, covering what the vault history's page and the
        // points-ledger closing balance read of them (event, entry type, balance after): both become
        // index-only walks of the wallet's slice. SQLite 3.50 otherwise chose (wallet_id, entry_id)
        // and sorted the whole wallet for every page (10 ms for a 36,000-event customer, 0.3 ms now).
        // Key columns rather than INCLUDE, so the one statement serves both databases; entry_id is
        // unique, so the trailing columns never change the order.
        (11, "covering wallet time index", """
        DROP INDEX ix_ledger_entries_wallet_time;
        CREATE INDEX ix_ledger_entries_wallet_time ON ledger_entries (wallet_id, created_at, entry_id, event_id, entry_type, balance_after);
        """),
        // Events written before two corrections, made right in place (no column changes):
        // - a bill's held points converted (DelayedAccrual) or cancelled (TriggeredPointsCancellation)
        //   are at the bill's store and till, so the points-ledger read's tillId finds them with it;
        // - a pool's event names the customer who acted (NewEvent.CustomerId), not the primary
        //   member: a transfer into the pool its sender (0 when a group sent it), a transfer out of
        //   the pool and the pool's expiry no customer (0). Of a transfer's two events the sending
        //   side is written first, so an event whose related event is older is the receiving side.
        (12, "points-ledger: bill stores on held-point events, actors on pool events", """
        UPDATE events SET
            store_id = (SELECT b.store_id FROM bills b WHERE b.bill_id = events.bill_id),
            till_id = (SELECT b.till_id FROM bills b WHERE b.bill_id = events.bill_id)
        WHERE event_name IN ('DelayedAccrual', 'TriggeredPointsCancellation') AND bill_id IS NOT NULL
            AND store_id IS NULL AND till_id IS NULL;
        UPDATE events SET customer_id = CASE
                WHEN related_event_id < event_id THEN COALESCE(
                    (SELECT CASE WHEN d.owner_type = 'CUSTOMER' THEN d.owner_id ELSE 0 END FROM events d WHERE d.event_id = events.related_event_id), 0)
                ELSE 0 END
        WHERE owner_type = 'GROUP' AND event_name = 'PointsTransfer';
        UPDATE events SET customer_id = 0 WHERE owner_type = 'GROUP' AND event_name = 'PointsExpiry';
        """),
        // The transactional outbox (LoyaltyLedger.Outbox): each ledger change writes the events it
        // announces in its own transaction; positions are given later, in commit order, by the
        // sequencer, and readers page by position, never by event_id (ids are taken in one order and
        // transactions commit in another). xact (PostgreSQL) is the writing transaction.
        // expiry_notices records each points.expiring sent, per lot (0: a WHOLE_BALANCE wallet's
        // whole balance) and expiry instant, so a notice goes out once per lot and window; a
        // program's expiry_notice_days is its notice window (NULL: the default, 14 days).
        (13, "outbox, expiry notices", """
        CREATE TABLE outbox_events (
            event_id {identity},
            org_id bigint NOT NULL,
            position bigint NULL,
            type text NOT NULL,
            created_at bigint NOT NULL,
            payload text NOT NULL{transactionIdColumn}
        );
        CREATE INDEX ix_outbox_events_org_position ON outbox_events (org_id, position);
        CREATE UNIQUE INDEX ux_outbox_events_position ON outbox_events (position);
        CREATE INDEX ix_outbox_events_unsequenced ON outbox_events (event_id) WHERE position IS NULL;
        CREATE TABLE expiry_notices (
            org_id bigint NOT NULL,
            wallet_id bigint NOT NULL,
            lot_id bigint NOT NULL,
            expires_at bigint NOT NULL,
            noticed_at bigint NOT NULL,
            CONSTRAINT ux_expiry_notices PRIMARY KEY (wallet_id, lot_id, expires_at)
        );
        ALTER TABLE programs ADD COLUMN expiry_notice_days integer NULL;
        """),
        // An organization's events in time order, for the ledger export (Exports/LedgerExport.cs):
        // the export walks it and streams lines as it goes, so its first line leaves at once and
        // neither database sorts the organization's history. Event ids are not in time order (the
        // seeder writes customer by customer, the expiry run writes as of an earlier instant), so
        // the primary key cannot serve. One entry per event, not per line, on the write path.
        (14, "exports: events in time order", """
        CREATE INDEX ix_events_time ON events (org_id, created_at, event_id);
        """),
        // Webhooks (Webhooks/): an organization's endpoints, and per endpoint a queue of deliveries
        // in commit order with every attempt logged. An endpoint's cursor is the last outbox position
        // fanned out to it; its lease is held by the one dispatcher sending its queue. The signing
        // secret must be readable to sign with, so it is stored as written by WebhookSecrets
        // (AES-256-GCM under Ledger:Webhooks:SecretKey when that is set). A delivery of an outbox
        // event reads the payload from the outbox row; a ping (webhook.test) carries its own.
        (15, "webhooks: endpoints, deliveries, attempts", """
        CREATE TABLE webhook_endpoints (
            endpoint_id {identity},
            org_id bigint NOT NULL,
            url text NOT NULL,
            events text NOT NULL,
            description text NULL,
            secret text NOT NULL,
            previous_secret text NULL,
            previous_secret_until bigint NULL,
            enabled smallint NOT NULL,
            disabled_reason text NULL,
            disabled_at bigint NULL,
            failed_in_a_row bigint NOT NULL,
            cursor_position bigint NOT NULL,
            lease_owner text NULL,
            lease_until bigint NULL,
            created_at bigint NOT NULL,
            updated_at bigint NOT NULL
        );
        CREATE INDEX ix_webhook_endpoints_org ON webhook_endpoints (org_id, endpoint_id);
        CREATE TABLE webhook_deliveries (
            delivery_id {identity},
            org_id bigint NOT NULL,
            endpoint_id bigint NOT NULL,
            event_id bigint NULL,
            position bigint NULL,
            message_id text NOT NULL,
            event_type text NOT NULL,
            payload text NULL,
            status text NOT NULL,
            attempts bigint NOT NULL,
            next_attempt_at bigint NULL,
            last_status_code bigint NULL,
            last_error text NULL,
            created_at bigint NOT NULL,
            completed_at bigint NULL
        );
        CREATE INDEX ix_webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, delivery_id);
        CREATE INDEX ix_webhook_deliveries_pending ON webhook_deliveries (endpoint_id, delivery_id) WHERE status = 'pending';
        CREATE TABLE webhook_attempts (
            attempt_id {identity},
            delivery_id bigint NOT NULL,
            endpoint_id bigint NOT NULL,
            attempt bigint NOT NULL,
            attempted_at bigint NOT NULL,
            status_code bigint NULL,
            duration_ms bigint NOT NULL,
            error text NULL,
            next_attempt_at bigint NULL
        );
        CREATE INDEX ix_webhook_attempts_delivery ON webhook_attempts (delivery_id, attempt);
        """),
        // The support console's program dashboard adds up an organization's lines per day. Without an
        // index on the organization's events in time order that is a scan of every organization's
        // events (EXPLAIN in docs/performance.md); with it (migration 14's ix_events_time, which the
        // ledger export walks too), one range of one organization's days. A past day's totals never change (lines
        // are stamped when posted, and never change), so each is added up once and kept in
        // daily_movements; daily_movement_days marks the days done, empty ones included. The console's
        // sessions live in console_sessions (the cookie holds only a session id), so signing out ends a
        // session on every server, even for a copy of the cookie; the keys that encrypt its cookies and
        // antiforgery tokens in console_key_ring, so every server sharing the database reads them.
        (16, "support console: daily movement totals, sessions", """
        CREATE TABLE daily_movements (
            org_id bigint NOT NULL,
            day bigint NOT NULL,
            program_id bigint NOT NULL,
            currency_id bigint NOT NULL,
            category text NOT NULL,
            event_name text NOT NULL,
            entry_type text NOT NULL,
            points bigint NOT NULL,
            lines bigint NOT NULL,
            CONSTRAINT ux_daily_movements PRIMARY KEY (org_id, day, program_id, currency_id, category, event_name, entry_type)
        );
        CREATE TABLE daily_movement_days (
            org_id bigint NOT NULL,
            day bigint NOT NULL,
            CONSTRAINT ux_daily_movement_days PRIMARY KEY (org_id, day)
        );
        CREATE TABLE console_sessions (
            session_id text PRIMARY KEY,
            org_id bigint NOT NULL,
            key_id text NOT NULL,
            expires_at bigint NOT NULL,
            ticket text NOT NULL
        );
        CREATE INDEX ix_console_sessions_key ON console_sessions (key_id);
        CREATE INDEX ix_console_sessions_expiry ON console_sessions (expires_at);
        CREATE TABLE console_key_ring (
            name text PRIMARY KEY,
            xml text NOT NULL,
            created_at bigint NOT NULL
        );
        """),
        // Tiers (Tiers/): a program's tier policy (JSON, read with the program through the catalog
        // cache; base_tier is what an owner holds before any activity, so the wallet lock can name
        // the tier of every line in the same statement), each owner's tier with the counters of its
        // metric (lifetime, the current period, and what was earned after the period ended but
        // before its evaluation), and every tier change. A bill keeps what it counted toward the
        // metric and in which period, so a return takes back exactly its share from that period.
        // Every ledger line records the tier its owner held when it was posted.
        (17, "tiers", """
        CREATE TABLE tier_policies (
            org_id bigint NOT NULL,
            program_id bigint NOT NULL,
            policy text NOT NULL,
            base_tier text NOT NULL,
            updated_at bigint NOT NULL,
            CONSTRAINT ux_tier_policies PRIMARY KEY (org_id, program_id)
        );
        CREATE TABLE owner_tiers (
            org_id bigint NOT NULL,
            owner_type text NOT NULL,
            owner_id bigint NOT NULL,
            program_id bigint NOT NULL,
            tier_name text NOT NULL,
            tier_since bigint NOT NULL,
            period_no bigint NOT NULL,
            period_start bigint NOT NULL,
            period_end bigint NOT NULL,
            metric_lifetime bigint NOT NULL,
            metric_period bigint NOT NULL,
            metric_next bigint NOT NULL,
            pinned smallint NOT NULL,
            override_reason text NULL,
            updated_at bigint NOT NULL,
            CONSTRAINT ux_owner_tiers PRIMARY KEY (org_id, owner_type, owner_id, program_id)
        );
        CREATE INDEX ix_owner_tiers_due ON owner_tiers (org_id, program_id, period_end);
        CREATE TABLE tier_changes (
            change_id {identity},
            org_id bigint NOT NULL,
            owner_type text NOT NULL,
            owner_id bigint NOT NULL,
            program_id bigint NOT NULL,
            from_tier text NOT NULL,
            to_tier text NOT NULL,
            cause text NOT NULL,
            event_id bigint NULL,
            run_id bigint NULL,
            reason text NULL,
            metric bigint NOT NULL,
            period_end bigint NOT NULL,
            changed_at bigint NOT NULL,
            posted_by text NULL
        );
        CREATE INDEX ix_tier_changes_owner ON tier_changes (org_id, owner_type, owner_id, change_id);
        ALTER TABLE bills ADD COLUMN tier_metric bigint NOT NULL DEFAULT 0;
        ALTER TABLE bills ADD COLUMN tier_period bigint NULL;
        ALTER TABLE ledger_entries ADD COLUMN tier text NULL;
        """),
        // Every index entry is written by the posting that inserts the row (and again by every
        // PostgreSQL update that cannot stay on the page), so an index earns its place by a read
        // that needs it. docs/indexes.md lists each remaining index with that read and its plan on
        // both databases, and the entries a bill and a redemption write before and after this.
        // Dropped, with what serves their queries instead:
        // - ix_lots_wallet (wallet_id, is_debt, expires_at, lot_id) and ix_lots_open (WHERE
        //   remaining <> 0): one ix_lots_open whose condition is the queries' own (remaining > 0
        //   AND is_debt = 0), so SQLite uses it too (it cannot prove remaining <> 0 from remaining
        //   > 0, and read every lot of the wallet, spent ones included, on each redemption), and
        //   ix_lots_debt for the one lookup of a wallet's debt lot, an entry only for debt lots.
        // - ix_lot_movements_lot (lot_id): no read looks movements up by lot; the verifier's
        //   per-lot sums scan the table.
        // - ix_bills_customer (org_id, customer_id): no read looks bills up by customer; a bill is
        //   found by id (primary key) or by number (ux_bills_number).
        // - ix_write_audit_org, ix_write_audit_key: the service never reads write_audit.
        // - ix_events_external_reference and ix_events_related keep only the events that have a
        //   reference or a related event: the reads look one up by value, never the NULLs that
        //   most events (every bill) would otherwise add.
        // Kept although another index could answer the same queries:
        // - ix_ledger_entries_wallet (wallet_id, entry_id): the balance as of a date takes the
        //   wallet's highest entry id stamped by then, which PostgreSQL finds at the end of this
        //   index; ix_ledger_entries_wallet_time would read all the wallet's lines up to the date
        //   (0.1 ms against 10 ms for a customer with 36,000 events).
        // - ix_outbox_events_unsequenced: ux_outbox_events_position holds the rows without a
        //   position too, but whether PostgreSQL reads them there depends on its statistics. Without
        //   any for the column (a table not analyzed yet, a restored database) it answers the
        //   sequencer's probe (MIN(event_id) WHERE position IS NULL) by walking the primary key until
        //   it meets a row without a position: the whole outbox when none waits (0.33 s at 756,000
        //   rows), on every tick of an idle sequencer. The partial index holds only the waiting rows.
        (18, "indexes no query needs", """
        DROP INDEX ix_lots_wallet;
        DROP INDEX ix_lots_open;
        CREATE INDEX ix_lots_open ON lots (wallet_id, expires_at, lot_id) WHERE remaining > 0 AND is_debt = 0;
        CREATE INDEX ix_lots_debt ON lots (wallet_id) WHERE is_debt = 1;
        DROP INDEX ix_lot_movements_lot;
        DROP INDEX ix_bills_customer;
        DROP INDEX ix_write_audit_org;
        DROP INDEX ix_write_audit_key;
        DROP INDEX ix_events_external_reference;
        CREATE INDEX ix_events_external_reference ON events (org_id, external_reference) WHERE external_reference IS NOT NULL;
        DROP INDEX ix_events_related;
        CREATE INDEX ix_events_related ON events (org_id, related_event_id) WHERE related_event_id IS NOT NULL;
        """),
        // An owner whose next period, as an evaluation decided it, already reaches a higher tier is
        // marked in the chunk that decides it (upgrade_due), in the same transaction; the upgrades are
        // posted afterwards (bonus wallets before tier rows, as postings lock them) and clear the mark.
        // A run that stops in between leaves the marks, and the next run posts them: an upgrade the
        // evaluation decided is never lost. The partial index holds only the marked owners.
        (19, "tiers: upgrades an evaluation decided", """
        ALTER TABLE owner_tiers ADD COLUMN upgrade_due smallint NOT NULL DEFAULT 0;
        CREATE INDEX ix_owner_tiers_upgrade_due ON owner_tiers (org_id, program_id, owner_type, owner_id) WHERE upgrade_due = 1;
        """),
        // Ready to be distributed by organization (docs/scaling.md): with Citus a distributed table's
        // primary key and unique constraints must hold the distribution column, and here every one
        // leads with org_id, so a key's lookup names the organization and goes to one shard. The
        // tables keyed by an identity (and expiry_notices) get (org_id, id) on PostgreSQL; the id
        // stays unique by its sequence. SQLite keeps its row ids (an INTEGER PRIMARY KEY is the row
        // id only alone, and a SQLite file is never distributed); its queries name org_id all the
        // same. The outbox's positions are unique per organization: one sequencer numbers them, in
        // one order across organizations, and (position) stays indexed for the readers of every
        // organization's feed. webhook_attempts gets the org_id of its delivery, as every other
        // distributed table has one (attempts whose delivery is gone, left by an endpoint deleted while
        // a dispatcher recorded them, belong to no organization and nothing reads them: dropped). organizations, api_keys, console_sessions, console_key_ring and
        // schema_migrations stay as they are: small, read before the organization is known (a key,
        // a session cookie) or global, they are Citus reference tables.
        (20, "keys lead with the organization", """
        ALTER TABLE webhook_attempts ADD COLUMN org_id bigint NOT NULL DEFAULT 0;
        DELETE FROM webhook_attempts WHERE NOT EXISTS (SELECT 1 FROM webhook_deliveries d WHERE d.delivery_id = webhook_attempts.delivery_id);
        UPDATE webhook_attempts SET org_id = (SELECT d.org_id FROM webhook_deliveries d WHERE d.delivery_id = webhook_attempts.delivery_id);
        DROP INDEX ix_outbox_events_org_position;
        DROP INDEX ux_outbox_events_position;
        CREATE UNIQUE INDEX ux_outbox_events_position ON outbox_events (org_id, position);
        CREATE INDEX ix_outbox_events_position ON outbox_events (position);
        {only postgres}
        ALTER TABLE webhook_attempts ALTER COLUMN org_id DROP DEFAULT;
        DROP INDEX ix_webhook_endpoints_org;
        ALTER TABLE wallets DROP CONSTRAINT wallets_pkey, ADD PRIMARY KEY (org_id, wallet_id);
        ALTER TABLE events DROP CONSTRAINT events_pkey, ADD PRIMARY KEY (org_id, event_id);
        ALTER TABLE ledger_entries DROP CONSTRAINT ledger_entries_pkey, ADD PRIMARY KEY (org_id, entry_id);
        ALTER TABLE lots DROP CONSTRAINT lots_pkey, ADD PRIMARY KEY (org_id, lot_id);
        ALTER TABLE lot_movements DROP CONSTRAINT lot_movements_pkey, ADD PRIMARY KEY (org_id, movement_id);
        ALTER TABLE bills DROP CONSTRAINT bills_pkey, ADD PRIMARY KEY (org_id, bill_id);
        ALTER TABLE write_audit DROP CONSTRAINT write_audit_pkey, ADD PRIMARY KEY (org_id, audit_id);
        ALTER TABLE outbox_events DROP CONSTRAINT outbox_events_pkey, ADD PRIMARY KEY (org_id, event_id);
        ALTER TABLE expiry_notices DROP CONSTRAINT ux_expiry_notices, ADD CONSTRAINT ux_expiry_notices PRIMARY KEY (org_id, wallet_id, lot_id, expires_at);
        ALTER TABLE webhook_endpoints DROP CONSTRAINT webhook_endpoints_pkey, ADD PRIMARY KEY (org_id, endpoint_id);
        ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_pkey, ADD PRIMARY KEY (org_id, delivery_id);
        ALTER TABLE webhook_attempts DROP CONSTRAINT webhook_attempts_pkey, ADD PRIMARY KEY (org_id, attempt_id);
        ALTER TABLE tier_changes DROP CONSTRAINT tier_changes_pkey, ADD PRIMARY KEY (org_id, change_id);
        {end}
        """),
        // Every read names the organization now (migration 20), and the two covering indexes of
        // ledger_entries did not hold org_id: each line a page walked past was read from the table
        // to check it (a vault history page 30,000 lines deep went from 8-11 ms to 22-34 ms on
        // PostgreSQL). Trailing, so every lookup the indexes served keeps its leading columns and
        // order, and the walks are index-only again; 8 bytes more per line in each.
        (21, "covering ledger_entries indexes hold the organization", """
        DROP INDEX ix_ledger_entries_wallet_time;
        CREATE INDEX ix_ledger_entries_wallet_time ON ledger_entries (wallet_id, created_at, entry_id, event_id, entry_type, balance_after, org_id);
        DROP INDEX ix_ledger_entries_event_filter;
        CREATE INDEX ix_ledger_entries_event_filter ON ledger_entries (event_id, currency_id, category, entry_type, program_id, org_id);
        """),
        // A page of an owner's points (or alternate-currency) events by number seeks to it instead of
        // walking past the pages before it: each event holding points lines is numbered 1, 2, 3... by
        // its place in its owner's history in page order (time, then event id) (points_seq), and each
        // holding currency lines likewise (currency_seq). Posting numbers an event under the owner's
        // counter row, from the running count it already keeps, which now keeps the owner's latest event
        // time too (last_event_at): an event stamped after it is the last, with no statement of its
        // own. The backfill numbers existing events.
        // Partial, so an event pays an index entry only for the kinds of lines it holds. Not unique: an
        // event stamped before some already numbered (a posting that took the owner's lock after a
        // later-stamped one) moves them one up in one statement, which a unique index would refuse
        // part-way; `verify` checks the numbers.
        (22, "per-owner event numbers", """
        ALTER TABLE events ADD COLUMN points_seq bigint NULL;
        ALTER TABLE events ADD COLUMN currency_seq bigint NULL;
        ALTER TABLE owner_event_counts ADD COLUMN last_event_at bigint NOT NULL DEFAULT 0;
        UPDATE events SET points_seq = s.n
        FROM (SELECT org_id AS o, event_id AS id,
                  ROW_NUMBER() OVER (PARTITION BY org_id, owner_type, owner_id ORDER BY created_at, event_id) AS n
              FROM events WHERE (line_kinds & 1) <> 0) s
        WHERE events.org_id = s.o AND events.event_id = s.id;
        UPDATE events SET currency_seq = s.n
        FROM (SELECT org_id AS o, event_id AS id,
                  ROW_NUMBER() OVER (PARTITION BY org_id, owner_type, owner_id ORDER BY created_at, event_id) AS n
              FROM events WHERE (line_kinds & 2) <> 0) s
        WHERE events.org_id = s.o AND events.event_id = s.id;
        UPDATE owner_event_counts SET last_event_at = s.t
        FROM (SELECT org_id AS o, owner_type AS ot, owner_id AS oi, MAX(created_at) AS t FROM events GROUP BY org_id, owner_type, owner_id) s
        WHERE owner_event_counts.org_id = s.o AND owner_event_counts.owner_type = s.ot AND owner_event_counts.owner_id = s.oi;
        CREATE INDEX ix_events_owner_points_seq ON events (org_id, owner_type, owner_id, points_seq) WHERE points_seq IS NOT NULL;
        CREATE INDEX ix_events_owner_currency_seq ON events (org_id, owner_type, owner_id, currency_seq) WHERE currency_seq IS NOT NULL;
        """),
        // The same for the vault history (a customer's plain points of one program, oldest first): its
        // movements are the lines of the wallet's points (regular, plain points), opening balances
        // left out, and the customer's voucher redemptions in that program, which move no points.
        // Each is numbered by its place in that merged history (time, event id, line id): the line in
        // ledger_entries.history_seq, the redemption in events.history_seq. The wallet row keeps the
        // count and the latest time numbered, which Posting reads with the wallet's lock: a line or
        // redemption stamped after them takes the next number with no statement of its own; one
        // stamped before (a posting that took the wallet's lock after a later-stamped one) moves those
        // after it one up. The backfill numbers existing history. ix_ledger_entries_wallet goes: its
        // one read, the balance as of a date, now takes the highest entry id among the wallet's last
        // lines by time in one backward seek of ix_ledger_entries_wallet_time, so the new index costs
        // a bill one entry and saves it three.
        (23, "per-wallet history numbers", """
        ALTER TABLE ledger_entries ADD COLUMN history_seq bigint NULL;
        ALTER TABLE events ADD COLUMN history_seq bigint NULL;
        ALTER TABLE wallets ADD COLUMN history_count bigint NOT NULL DEFAULT 0;
        ALTER TABLE wallets ADD COLUMN history_last_at bigint NOT NULL DEFAULT 0;
        CREATE TABLE history_numbers AS
        SELECT i.org_id, i.wallet_id, i.created_at, i.event_id, i.entry_id,
            ROW_NUMBER() OVER (PARTITION BY i.org_id, i.wallet_id ORDER BY i.created_at, i.event_id, i.entry_id) AS n
        FROM (
            SELECT le.org_id, le.wallet_id, le.created_at, le.event_id, le.entry_id
            FROM ledger_entries le JOIN wallets w ON w.org_id = le.org_id AND w.wallet_id = le.wallet_id
            WHERE w.currency_id = 0 AND w.category = 'REGULAR' AND le.entry_type <> 'OPENING_BALANCE'
            UNION ALL
            SELECT e.org_id, w.wallet_id, e.created_at, e.event_id, 0
            FROM events e JOIN wallets w ON w.org_id = e.org_id AND w.owner_type = e.owner_type AND w.owner_id = e.owner_id
                AND w.program_id = e.source_program_id AND w.currency_id = 0 AND w.category = 'REGULAR'
            WHERE e.event_name = 'VoucherRedemption') i;
        UPDATE ledger_entries SET history_seq = h.n FROM history_numbers h
        WHERE h.entry_id <> 0 AND ledger_entries.org_id = h.org_id AND ledger_entries.entry_id = h.entry_id;
        UPDATE events SET history_seq = h.n FROM history_numbers h
        WHERE h.entry_id = 0 AND events.org_id = h.org_id AND events.event_id = h.event_id;
        UPDATE wallets SET history_count = h.c, history_last_at = h.t
        FROM (SELECT org_id, wallet_id, MAX(n) AS c, MAX(created_at) AS t FROM history_numbers GROUP BY org_id, wallet_id) h
        WHERE wallets.org_id = h.org_id AND wallets.wallet_id = h.wallet_id;
        DROP TABLE history_numbers;
        CREATE INDEX ix_ledger_entries_wallet_history ON ledger_entries (wallet_id, history_seq) WHERE history_seq IS NOT NULL;
        DROP INDEX ix_ledger_entries_wallet;
        CREATE INDEX ix_events_voucher_history ON events (org_id, owner_type, owner_id, source_program_id, history_seq) WHERE history_seq IS NOT NULL;
        """),
        // An outbox row is written without a position and numbered by the sequencer after its
        // commit. The two position indexes held the waiting rows too (under NULL), which no read
        // looks for there: the sequencer finds them in ix_outbox_events_unsequenced. Partial, they
        // take an entry only when the row is numbered: 2 entries fewer per outbox row on
        // PostgreSQL (8 per bill, a seventh of its index entries), and on SQLite 2 fewer added and
        // 2 fewer deleted. Every read of a position names it (position > x, or IS NOT NULL for the
        // highest), so both databases still read the partial indexes.
        (24, "outbox positions indexed once given", """
        DROP INDEX ux_outbox_events_position;
        CREATE UNIQUE INDEX ux_outbox_events_position ON outbox_events (org_id, position) WHERE position IS NOT NULL;
        DROP INDEX ix_outbox_events_position;
        CREATE INDEX ix_outbox_events_position ON outbox_events (position) WHERE position IS NOT NULL;
        """),
        // Before a bill or a redemption a posting expires what is due in its wallets; nearly always
        // nothing is, and asking cost a statement per wallet and a round trip per posting (the write
        // mix's most costly statement in pg_stat_statements). A wallet now keeps a time before which
        // none of its open lots is due: no lot remaining and dated expires before it (NULL: not known
        // yet, so a posting asks, as every wallet's first one does after this migration). The posting
        // that asks sets it from the next date; one that opens a lot or puts points back into one
        // lowers it to that lot's date. It is kept with the balance, in the same update.
        (25, "wallets keep when their next lot is due", """
        ALTER TABLE wallets ADD COLUMN lots_due_from bigint NULL;
        """),
        // ix_lots_due finds an organization's due lots by date alone, for the expiry run and the
        // expiry notices on PostgreSQL. SQLite never reads it: it plans those queries from the
        // organization's wallets into each one's ix_lots_open (docs/indexes.md), and it keeps no
        // statistics that would make it choose otherwise. Yet every lot a posting opens, takes from or
        // spends wrote an entry into it: 5% of the pages the writer logged under the write mix (a
        // bill's three lots, a redemption's updated one), on the one writer whose pages written per
        // posting are its limit.
        (26, "no due-lots index where nothing reads it", """
        {only sqlite}
        DROP INDEX ix_lots_due;
        {end}
        """),
    ];

    /// <summary>The advisory lock that serializes servers migrating one PostgreSQL database.</summary>
    private const long MigrationLock = 7340001;

    /// <summary>Applies every migration not yet applied, each in its own transaction.</summary>
    /// <remarks>A progress callback, when given, is told (migrations looked at, the name of the next) as it goes.</remarks>
    public static async Task ApplyAsync(LedgerDatabase database, CancellationToken ct, Action<long, string>? progress = null)
    {
        await using var connection = await database.OpenAsync(ct);
        await database.Dialect.BeforeMigrationsAsync(connection, MigrationLock, ct);
        try
        {
            await connection.ExecuteAsync("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at bigint NOT NULL)");
            var done = 0L;
            foreach (var (version, name, sql) in All)
            {
                progress?.Invoke(done++, name);
                await using var tx = await database.Dialect.BeginWriteAsync(connection, ct);
                var applied = await connection.ExecuteScalarAsync<long>(
                    "SELECT COUNT(*) FROM schema_migrations WHERE version = @version", new { version }, tx);
                if (applied > 0) { await tx.RollbackAsync(ct); continue; }
                // No time limit: a backfill rewrites whole tables (minutes on a large ledger), and a
                // migration cut off by the driver's default 30 s would leave the server unable to start.
                // A migration for the other database only (all of it in an {only ...} section) has
                // nothing to run here, and is recorded all the same.
                var expanded = database.Dialect.Expand(sql);
                if (!string.IsNullOrWhiteSpace(expanded))
                    await connection.ExecuteAsync(new CommandDefinition(expanded, transaction: tx, commandTimeout: 0, cancellationToken: ct));
                await connection.ExecuteAsync(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (@version, @name, @now)",
                    new { version, name, now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() }, tx);
                await tx.CommitAsync(ct);
            }
        }
        finally
        {
            await database.Dialect.AfterMigrationsAsync(connection, MigrationLock, CancellationToken.None);
        }
    }
}
