using System.Data.Common;
using Dapper;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Ledger;

/// <summary>
/// One open write transaction against one organization's ledger. Every movement of points goes
/// through <see cref="CreditAsync"/> or <see cref="DebitAsync"/>, so the ledger's invariants are
/// enforced in exactly one place:
/// <list type="bullet">
/// <item>entries are only ever inserted (append-only; corrections are new entries);</item>
/// <item>a wallet's stored balance moves by exactly the entry's points, and the entry records the balance after it;</item>
/// <item>every credit is a lot, every debit consumes lots earliest expiry first and records each lot it touched,
/// so the sum of a wallet's lot remainders always equals its balance;</item>
/// <item>a debit beyond the balance is refused unless the caller allows a negative balance, in which case the
/// shortfall is held in the wallet's debt lot and paid off by the next credits;</item>
/// <item>lifecycle postings use the same two primitives with named lots: <see cref="DebitLotsAsync"/> takes
/// exactly the lots due (expiry, conversion, return of held points), <see cref="RestoreLotsAsync"/> puts a
/// reversed redemption back into the lots it consumed;</item>
/// <item>every event and every line is announced in the outbox, in the same transaction (see
/// <see cref="PostingAnnouncements"/>): the rows are made when the caller's last batch runs
/// (<see cref="AddAnnouncements"/>) or, failing that, right before the transaction commits, and are
/// written at the very end of the transaction with their positions (Outbox.AddAll).</item>
/// </list>
/// </summary>
public sealed class Posting
{
    private readonly Dictionary<WalletKey, Wallet> _locked = [];
    private readonly HashSet<(long EventId, int Kind)> _eventKinds = [];
    private readonly HashSet<(long EventId, int Kind)> _declaredKinds = [];
    private readonly Dictionary<long, (OwnerType Type, long Id)> _eventOwners = [];
    private readonly PostingAnnouncements _announcements = new();
    private readonly Dictionary<(OwnerType Type, long Id, long ProgramId), string?> _tiers = [];

    public Posting(DbConnection connection, DbTransaction transaction, SqlDialect dialect, long orgId, DateTimeOffset now, string? postedBy,
        CancellationToken cancellation = default)
    {
        Cancellation = cancellation;
        Connection = connection;
        Transaction = transaction;
        Dialect = dialect;
        OrgId = orgId;
        Now = now;
        NowMs = now.ToUnixTimeMilliseconds();
        PostedBy = postedBy;
        // Whoever commits the transaction through LedgerDatabase.WriteAsync writes what is still
        // unannounced: a posting cannot commit without its outbox rows.
        CommitHooks.BeforeCommit(transaction, AnnounceAsync);
    }

    // The connection is private: every statement goes through this posting's methods, so it runs in
    // its transaction with its cancellation, after the statements held for its first round trip
    // (SendFirst). The transaction is the kernel's, for the hooks that follow its commit; nothing
    // outside the kernel can end it.
    private DbConnection Connection { get; }
    internal DbTransaction Transaction { get; }

    /// <summary>Statements held to go with this posting's first round trip, until they have gone.</summary>
    private ILeadingStatements? _first;
    public SqlDialect Dialect { get; }
    public long OrgId { get; }
    public DateTimeOffset Now { get; }
    public long NowMs { get; }
    public string? PostedBy { get; }

    /// <summary>
    /// Cancels the posting's statements (the request's token: a client that gives up stops its
    /// posting's database work, and the transaction rolls back).
    /// </summary>
    public CancellationToken Cancellation { get; }

    /// <summary>The server's cache of programs and stores, or null to read them from the database every time.</summary>
    public ICatalogCache? Catalog { get; init; }

    /// <summary>
    /// True once this posting created a program, currency, store or till: the rules then read them
    /// past the cache, since what they read is not committed yet and must not be shared with other requests.
    /// </summary>
    public bool CatalogChanged { get; private set; }

    /// <summary>
    /// The cache to read programs and stores through: none once this posting has changed them, since
    /// what it reads then is not committed yet and must not be shared with other requests.
    /// </summary>
    public ICatalogCache? CatalogForReads => CatalogChanged ? null : Catalog;

    /// <summary>Marks that this posting creates a program, currency, store or till; the cache forgets the organization's programs.</summary>
    public void ChangeCatalog()
    {
        CatalogChanged = true;
        Catalog?.InvalidatePrograms(OrgId);
    }

    /// <summary>
    /// Holds <paramref name="first"/> to go ahead of this posting's first statements, in their round
    /// trip (a write's claim of its Idempotency-Key, which then costs no round trip of its own); a
    /// posting that ends with none sends them with <see cref="SendFirstAsync"/>.
    /// </summary>
    public void SendFirst(ILeadingStatements first)
    {
        if (_first is { Pending: true }) throw new InvalidOperationException("The posting already holds statements for its first round trip.");
        _first = first;
    }

    /// <summary>Sends what <see cref="SendFirst"/> holds, if it has not gone yet, in a round trip of its own.</summary>
    public async Task SendFirstAsync()
    {
        if (_first is { Pending: true }) await Batch().RunAsync();
    }

    public async Task<T?> ScalarAsync<T>(string sql, object? args = null)
    {
        LockStep.Refuse(Transaction);
        await SendFirstAsync();
        return await Connection.ExecuteScalarAsync<T>(Command(sql, args));
    }

    public async Task<int> ExecuteAsync(string sql, object? args = null)
    {
        LockStep.Refuse(Transaction);
        await SendFirstAsync();
        return await Connection.ExecuteAsync(Command(sql, args));
    }

    public async Task<IEnumerable<T>> QueryAsync<T>(string sql, object? args = null)
    {
        LockStep.Refuse(Transaction);
        await SendFirstAsync();
        return await Connection.QueryAsync<T>(Command(sql, args));
    }

    public async Task<T?> QuerySingleOrDefaultAsync<T>(string sql, object? args = null)
    {
        LockStep.Refuse(Transaction);
        await SendFirstAsync();
        return await Connection.QuerySingleOrDefaultAsync<T>(Command(sql, args));
    }

    /// <summary>
    /// Runs statements written for any connection (a directory's lookup or insert, a key's issue,
    /// the view an answer shows) in this posting's transaction, so they see what the posting has
    /// written so far, after what <see cref="SendFirst"/> holds.
    /// </summary>
    public async Task<T> WithConnectionAsync<T>(Func<DbConnection, DbTransaction, Task<T>> work)
    {
        LockStep.Refuse(Transaction);
        await SendFirstAsync();
        return await work(Connection, Transaction);
    }

    private CommandDefinition Command(string sql, object? args) =>
        new(Dialect.Expand(sql), args, Transaction, cancellationToken: Cancellation);

    /// <summary>
    /// Creates (if needed) and locks the given wallets, in key order: every posting that touches
    /// several wallets takes their locks in this one global order, so two postings cannot deadlock.
    /// </summary>
    public async Task LockWalletsAsync(IEnumerable<WalletKey> keys) => await LockWalletsAsync(keys, null);

    /// <summary>
    /// <see cref="LockWalletsAsync(IEnumerable{WalletKey})"/>, with the statements <paramref name="andThen"/>
    /// adds run in the same round trip right after the locks (a row that must be locked after the
    /// wallets, as an owner's tier row is); returns the batch's results for them.
    /// </summary>
    public async Task<BatchResults?> LockWalletsAsync(IEnumerable<WalletKey> keys, Action<StatementBatch>? andThen)
    {
        var toLock = keys.Distinct().Where(k => !_locked.ContainsKey(k)).Order().ToList();
        // Run side by side with the other writes of its batch, a posting names the wallets it reads
        // and changes: two writes of one batch never touch one wallet in the same round (LockStep).
        // Their owners too: what a posting changes of an owner's (its tier counters, its events) is
        // then its alone, whichever statement changes it first.
        foreach (var key in toLock)
        {
            LockStep.Claim(Transaction, key);
            LockStep.Claim(Transaction, (key.OwnerType, key.OwnerId));
        }
        if (toLock.Count == 0)
        {
            if (andThen is null) return null;
            var only = Batch();
            andThen(only);
            return await only.RunAsync();
        }
        // One multi-row upsert: it touches each row in the order of its VALUES (the key order), which
        // takes PostgreSQL's row locks as FOR UPDATE would, creates the wallets that do not exist yet,
        // and returns the committed balances and activity clocks, all in one round trip. On SQLite the
        // IMMEDIATE transaction already holds the writer lock. A wallet it creates has no lot, so none
        // is due before the end of time (Wallet.NoLotDue): a new member's first posting does not look
        // for due lots, a round trip of its own.
        var values = new System.Text.StringBuilder();
        var args = new Dictionary<string, object?> { ["org"] = OrgId, ["now"] = NowMs, ["noLotDue"] = Wallet.NoLotDue };
        for (var i = 0; i < toLock.Count; i++)
        {
            var key = toLock[i];
            var n = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (i > 0) values.Append(", ");
            values.Append($"(@org, @ot{n}, @oi{n}, @p{n}, @c{n}, @k{n}, 0, @now, @noLotDue)");
            args["ot" + n] = key.OwnerType.ToWire();
            args["oi" + n] = key.OwnerId;
            args["p" + n] = key.ProgramId;
            args["c" + n] = key.CurrencyId;
            args["k" + n] = key.Category.ToWire();
        }
        var batch = Batch();
        var locked = batch.Query(
            $"""
            INSERT INTO wallets (org_id, owner_type, owner_id, program_id, currency_id, category, balance, updated_at, lots_due_from)
            VALUES {values}
            ON CONFLICT (org_id, owner_type, owner_id, program_id, currency_id, category)
            DO UPDATE SET updated_at = wallets.updated_at
            RETURNING wallet_id, balance, last_activity_at, owner_type, owner_id, program_id, currency_id, category, history_count, history_last_at, lots_due_from,
                CASE WHEN currency_id = 0 THEN NULL
                    ELSE (SELECT c.name FROM currencies c WHERE c.org_id = wallets.org_id AND c.currency_id = wallets.currency_id) END,
                COALESCE(
                    (SELECT t.tier_name FROM owner_tiers t WHERE t.org_id = wallets.org_id AND t.owner_type = wallets.owner_type
                        AND t.owner_id = wallets.owner_id AND t.program_id = wallets.program_id),
                    (SELECT tp.base_tier FROM tier_policies tp WHERE tp.org_id = wallets.org_id AND tp.program_id = wallets.program_id))
            """,
            args);
        andThen?.Invoke(batch);
        var results = await batch.RunAsync();
        var rows = results.Rows(locked);
        foreach (var row in rows)
        {
            LedgerNames.TryParseCategory((string)row[7]!, out var category);
            var key = new WalletKey(LedgerNames.ParseOwner((string)row[3]!), AsLong(row[4]), AsLong(row[5]), AsLong(row[6]), category);
            _locked[key] = new Wallet
            {
                WalletId = AsLong(row[0]),
                Key = key,
                Balance = new Points(AsLong(row[1])),
                LastActivityAt = row[2] is null ? null : AsLong(row[2]),
                HistoryCount = AsLong(row[8]),
                HistoryLastAt = AsLong(row[9]),
                LotsDueFrom = row[10] is null ? null : AsLong(row[10]),
                CurrencyName = (string?)row[11],
                Tier = _tiers.TryGetValue((key.OwnerType, key.OwnerId, key.ProgramId), out var known) ? known : (string?)row[12],
            };
        }
        if (toLock.Any(k => !_locked.ContainsKey(k)))
            throw new InvalidOperationException($"Locking {toLock.Count} wallets returned {rows.Count} rows that do not match them.");
        return results;
    }

    /// <summary>
    /// Sets the tier an owner holds in a program for the lines this posting writes from now on (the
    /// tier engine, once it has read the tier under its lock, or changed it). Without it, a line
    /// records the tier read when its wallet was locked.
    /// </summary>
    public void SetTier(OwnerType ownerType, long ownerId, long programId, string? tier)
    {
        _tiers[(ownerType, ownerId, programId)] = tier;
        foreach (var wallet in _locked.Values.Where(w => w.Key.OwnerType == ownerType && w.Key.OwnerId == ownerId && w.Key.ProgramId == programId))
            wallet.Tier = tier;
    }

    private static long AsLong(object? value) => Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture);

    /// <summary>A batch of statements in this posting's transaction, run with its <see cref="Cancellation"/>.</summary>
    public StatementBatch Batch() => new(Connection, Transaction, Dialect, Cancellation) { Leading = _first };

    /// <summary>A wallet this posting has locked.</summary>
    public Wallet Locked(WalletKey key) =>
        _locked.TryGetValue(key, out var wallet)
            ? wallet
            : throw new InvalidOperationException($"Wallet {key} was not locked before posting to it.");

    /// <summary>
    /// Inserts an event and returns its id. <paramref name="then"/>, if given, runs in the same round
    /// trip right after the insert and may refer to the new event as <c>{lastEventId}</c>.
    /// </summary>
    /// <remarks>
    /// An event written with the kinds of lines it will hold (<see cref="NewEvent.LineKinds"/>) is
    /// counted for them at once, and its lines then rewrite neither the event row nor the owner's
    /// counts. The posting holds the caller to it: it does not commit while a declared kind has no line.
    /// </remarks>
    public async Task<long> InsertEventAsync(NewEvent e, (string Sql, object? Args)? then = null) =>
        (await InsertEventWithAsync(e, then, withInsert: null)).EventId;

    /// <summary>
    /// <see cref="InsertEventAsync"/>, with statements of the caller's added by
    /// <paramref name="withInsert"/> after the insert's, in its round trip; returns the round trip's results for them.
    /// </summary>
    private async Task<(long EventId, BatchResults Results)> InsertEventWithAsync(NewEvent e, (string Sql, object? Args)? then, Action<StatementBatch>? withInsert)
    {
        if ((e.LineKinds & ~(EventLineKinds.Points | EventLineKinds.Currency)) != 0)
            throw new ArgumentException($"Unknown line kinds {e.LineKinds}.", nameof(e));
        var batch = Batch();
        var owner = (e.OwnerType, e.OwnerId);
        // The owner's counters and its customer's row are this posting's alone in a batch run side by side (LockStep).
        LockStep.Claim(Transaction, owner);
        if (e.CustomerId != NewEvent.NoCustomer) LockStep.Claim(Transaction, (OwnerType.Customer, e.CustomerId));
        // The owner's counter row first: its upsert locks it, so this owner's events are numbered one
        // posting at a time, and its counts after it give the event its numbers. It returns the
        // owner's latest event time: later than this posting's, the event lands among events already
        // numbered (see LaterCount). Where rows go from one statement to the next (data-modifying
        // WITH, see SqlDialect.WritesRowsFromArrays), the upsert and the insert are one statement,
        // the insert reading the counts from the upsert's rows; a voucher redemption, whose history
        // number may move other rows between the two, keeps them apart.
        // One statement reads one snapshot, taken when it starts, while an upsert that waited for
        // the counter row's lock updates (and returns) the row as the transaction it waited for left
        // it: counts that include that transaction's event, which the snapshot does not see. So the
        // statement numbers the event last by the counts alone, and an event stamped before the
        // owner's latest is placed among the others by statements of their own, after it, which see
        // every event counted (AddRenumberNew, then AddMakeRoomAfter).
        var countsRideInsert = Dialect.WritesRowsFromArrays && e.HistoryWallet is null;
        var counted = countsRideInsert ? -1 : AddOwnerEventCount(owner, batch, events: 1, kinds: e.LineKinds, returnLatest: true);
        var args = new Dictionary<string, object?>
        {
            ["org"] = OrgId, ["ownerType"] = e.OwnerType.ToWire(), ["ownerId"] = e.OwnerId, ["customerId"] = e.CustomerId,
            ["eventName"] = e.EventName, ["displayName"] = StatementBatch.Typed(e.DisplayName), ["now"] = NowMs, ["sourceProgramId"] = StatementBatch.Typed(e.SourceProgramId),
            // What an event may lack goes typed: a null's type is its value's, so the insert stays one prepared statement.
            ["storeId"] = StatementBatch.Typed(e.StoreId), ["tillId"] = StatementBatch.Typed(e.TillId), ["billId"] = StatementBatch.Typed(e.BillId),
            ["details"] = StatementBatch.Typed(e.DetailsJson), ["reason"] = StatementBatch.Typed(e.Reason), ["postedBy"] = StatementBatch.Typed(PostedBy),
            ["relatedEventId"] = StatementBatch.Typed(e.RelatedEventId), ["externalReference"] = StatementBatch.Typed(e.ExternalReference), ["lineKinds"] = e.LineKinds,
        };
        // A voucher redemption moves no points but is a movement of its wallet's history (the vault's).
        var historySeq = NoHistoryNumber;
        if (e.HistoryWallet is { } historyKey)
        {
            var wallet = Locked(historyKey);
            if (e.EventName != VoucherRedemptionEvent || !wallet.KeepsHistory || historyKey.OwnerType != e.OwnerType || historyKey.OwnerId != e.OwnerId
                || historyKey.ProgramId != e.SourceProgramId)
                throw new ArgumentException("Only a voucher redemption is numbered in a wallet's history: its owner's regular points in its program.", nameof(e));
            historySeq = AddHistoryNumber(batch, wallet, eventId: null);
            AddHistoryArgs(args, historySeq, wallet, eventId: null);
        }
        var insert = $"""
            INSERT INTO events (org_id, owner_type, owner_id, customer_id, event_name, display_name, created_at,
                source_program_id, store_id, till_id, bill_id, details, reason, posted_by, related_event_id, external_reference, line_kinds,
                points_seq, currency_seq, history_seq)
            SELECT @org, @ownerType, @ownerId, @customerId, @eventName, @displayName, @now,
                @sourceProgramId, @storeId, @tillId, @billId, @details, @reason, @postedBy, @relatedEventId, @externalReference, @lineKinds,
                {(countsRideInsert
                    ? "CASE WHEN (@lineKinds & 1) = 0 THEN NULL ELSE c.points_events END, CASE WHEN (@lineKinds & 2) = 0 THEN NULL ELSE c.currency_events END,"
                    : $"""
                      CASE WHEN (@lineKinds & 1) = 0 THEN NULL WHEN c.last_event_at <= @now THEN c.points_events
                          ELSE c.points_events - ({LaterCount(EventLineKinds.Points, eventId: null)}) END,
                      CASE WHEN (@lineKinds & 2) = 0 THEN NULL WHEN c.last_event_at <= @now THEN c.currency_events
                          ELSE c.currency_events - ({LaterCount(EventLineKinds.Currency, eventId: null)}) END,
                      """)}
                {historySeq}
            {(countsRideInsert ? "FROM counted c" : "FROM owner_event_counts c WHERE c.org_id = @org AND c.owner_type = @ownerType AND c.owner_id = @ownerId")}
            RETURNING event_id
            """;
        int inserted;
        if (countsRideInsert)
        {
            // One statement: the counts' upsert, the insert, and the statement after it if any, which
            // reads the new event's id from the insert's own rows. It returns the id and the latest time.
            AddOwnerEventCountArgs(args, events: 1, kinds: e.LineKinds);
            var alongside = then is { } next ? ThenRidesInsert(next, args) : null;
            inserted = batch.Query(
                $"WITH counted AS (\n{OwnerEventCountSql("RETURNING points_events, currency_events, last_event_at")}\n), inserted AS (\n{insert}\n)"
                + (alongside is null ? "" : $", alongside AS (\n{alongside}\n)")
                + "\nSELECT inserted.event_id, counted.last_event_at FROM inserted, counted",
                args);
            if (then is { } separate && alongside is null) batch.Execute(separate.Sql, separate.Args);
        }
        else if (then is { } next && ThenRidesInsert(next, args) is { } alongside)
        {
            // One statement: the insert and the statement after it, which reads the new event's id
            // from the insert's own rows (data-modifying WITH, see SqlDialect.WritesRowsFromArrays).
            inserted = batch.Query($"WITH inserted AS (\n{insert}\n), alongside AS (\n{alongside}\n)\nSELECT event_id FROM inserted", args);
        }
        else
        {
            inserted = batch.Query(insert, args);
            // Directly after the insert: on SQLite {lastEventId} is the last inserted rowid.
            if (then is { } separate) batch.Execute(separate.Sql, separate.Args);
        }
        withInsert?.Invoke(batch);
        var results = await batch.RunAsync();
        var eventId = results.SingleLong(inserted);
        var latest = countsRideInsert ? AsLong(results.Rows(inserted).Single()[1]) : results.SingleLong(counted);
        if (e.LineKinds != 0 && latest > NowMs)
        {
            // Stamped before the owner's latest event: it takes its place among them (the insert
            // above did so itself unless the counts rode in it), and those after it move one number
            // up. Rare, so it costs a round trip only then.
            var after = Batch();
            if (countsRideInsert) AddRenumberNew(after, owner, e.LineKinds, eventId);
            AddMakeRoomAfter(after, owner, e.LineKinds, eventId);
            await after.RunAsync();
        }
        _eventOwners[eventId] = owner;
        foreach (var kind in (int[])[EventLineKinds.Points, EventLineKinds.Currency])
        {
            if ((e.LineKinds & kind) == 0) continue;
            _eventKinds.Add((eventId, kind));
            _declaredKinds.Add((eventId, kind));
        }
        _announcements.Event(eventId, e);
        return (eventId, results);
    }

    /// <summary>
    /// The statement to run after an event's insert (<see cref="InsertEventAsync"/>'s <c>then</c>, a
    /// bill's link to its event) written to ride in the insert's statement, its arguments added to
    /// <paramref name="args"/>: on a database with data-modifying <c>WITH</c>, where the new event's id
    /// is read from the insert's rows instead of <c>{lastEventId}</c>. Null when it must go as a
    /// statement of its own: another database, or an argument named as one of the insert's with
    /// another value.
    /// </summary>
    private string? ThenRidesInsert((string Sql, object? Args) then, Dictionary<string, object?> args)
    {
        if (!Dialect.WritesRowsFromArrays || !then.Sql.Contains("{lastEventId}", StringComparison.Ordinal)) return null;
        var more = StatementBatch.ArgumentsOf(then.Args);
        if (more.Any(a => args.TryGetValue(a.Name, out var value) && !Equals(value, a.Value))) return null;
        foreach (var (name, value, declared) in more)
            args[name] = value ?? (declared is null ? null : StatementBatch.NullFor(declared));
        return then.Sql.Replace("{lastEventId}", "(SELECT event_id FROM inserted)", StringComparison.Ordinal);
    }

    /// <summary>
    /// SQL counting the owner's events of one kind that come after an event stamped <c>@now</c> in
    /// page order (time, then event id): for a new event (<paramref name="eventId"/> null, whose id will
    /// be the owner's highest, as ids are taken under the owner's counter lock) those stamped later.
    /// </summary>
    /// <remarks>
    /// An event is numbered by its place in its owner's history (<c>points_seq</c>, <c>currency_seq</c>),
    /// which the points-ledger read seeks a page by. A posting is stamped with the time it started, so
    /// one that takes the owner's lock after a later-stamped one (a moment apart in one process, or
    /// a server whose clock is behind, or history posted on a moved clock) lands before events
    /// already numbered: the count of those is the event's distance from the end, and
    /// <see cref="AddMakeRoomAfter"/> moves them one up. Both look up the owner's events index from
    /// <c>@now</c> on, and find nothing in the usual case.
    /// </remarks>
    private static string LaterCount(int kind, long? eventId) =>
        $"SELECT COUNT(*) FROM events x WHERE x.org_id = @org AND {Later("x.", kind, eventId)}";

    private static string Later(string alias, int kinds, long? eventId) =>
        $"{alias}owner_type = @ownerType AND {alias}owner_id = @ownerId AND " +
        (eventId is null
            ? $"{alias}created_at > @now"
            : $"({alias}created_at > @now OR ({alias}created_at = @now AND {alias}event_id > @eventId))") +
        $" AND ({alias}line_kinds & {kinds}) <> 0";

    /// <summary>
    /// Adds the statement moving the owner's events that come after the event one number up in each
    /// of <paramref name="kinds"/> (<see cref="EventLineKinds"/> bits) they hold (see <see cref="LaterCount"/>).
    /// </summary>
    private void AddMakeRoomAfter(StatementBatch batch, (OwnerType Type, long Id) owner, int kinds, long? eventId) =>
        batch.Execute(
            $"""
            UPDATE events SET
                points_seq = CASE WHEN (line_kinds & @kinds & 1) <> 0 THEN points_seq + 1 ELSE points_seq END,
                currency_seq = CASE WHEN (line_kinds & @kinds & 2) <> 0 THEN currency_seq + 1 ELSE currency_seq END
            WHERE org_id = @org AND {Later("", kinds, eventId)}
            """,
            new { org = OrgId, ownerType = owner.Type.ToWire(), ownerId = owner.Id, now = NowMs, eventId, kinds });

    /// <summary>
    /// Adds the statement moving a new event, numbered last in each of <paramref name="kinds"/>, back
    /// by the owner's events stamped after it (<see cref="LaterCount"/>), to its place in page order.
    /// <see cref="AddMakeRoomAfter"/> then moves those one up.
    /// </summary>
    private void AddRenumberNew(StatementBatch batch, (OwnerType Type, long Id) owner, int kinds, long eventId) =>
        batch.Execute(
            $"""
            UPDATE events SET
                points_seq = CASE WHEN (@kinds & 1) <> 0 THEN points_seq - ({LaterCount(EventLineKinds.Points, eventId: null)}) ELSE points_seq END,
                currency_seq = CASE WHEN (@kinds & 2) <> 0 THEN currency_seq - ({LaterCount(EventLineKinds.Currency, eventId: null)}) ELSE currency_seq END
            WHERE org_id = @org AND event_id = @eventId
            """,
            new { org = OrgId, ownerType = owner.Type.ToWire(), ownerId = owner.Id, now = NowMs, eventId, kinds });

    /// <summary>Links an event of this posting to another after both exist (a transfer's sending side to its receiving side).</summary>
    public async Task SetRelatedEventAsync(long eventId, long relatedEventId)
    {
        await ExecuteAsync("UPDATE events SET related_event_id = @relatedEventId WHERE org_id = @org AND event_id = @eventId", new { relatedEventId, org = OrgId, eventId });
        _announcements.Related(eventId, relatedEventId);
    }

    /// <summary>Replaces the reason of an event of this posting (a return says what it could not take back).</summary>
    public async Task SetReasonAsync(long eventId, string? reason)
    {
        await ExecuteAsync("UPDATE events SET reason = @reason WHERE org_id = @org AND event_id = @eventId", new { reason, org = OrgId, eventId });
        _announcements.Reason(eventId, reason);
    }

    /// <summary>
    /// Adds the outbox rows of what this posting has written so far to <paramref name="batch"/>, the
    /// caller's last batch before it commits, so they cost no round trip of their own. What is not
    /// added this way is written right before the commit.
    /// </summary>
    public void AddAnnouncements(StatementBatch batch)
    {
        AddSaveUnsavedHistories(batch);
        _announcements.AddTo(batch, OrgId, NowMs);
    }

    /// <summary>Writes the outbox rows of what this posting has written and not announced yet (nothing when there is none).</summary>
    public async Task AnnounceAsync(CancellationToken ct = default)
    {
        // Runs right before the commit (see the constructor): an event counted for a kind of line it
        // does not hold would be paged and counted wrongly by the points-ledger read forever.
        if (_declaredKinds.Count > 0)
        {
            var (eventId, kind) = _declaredKinds.First();
            throw new InvalidOperationException($"Event {eventId} was written as holding lines of kind {kind} and has none.");
        }
        if (_announcements.IsEmpty && !_locked.Values.Any(w => w.HistoryUnsaved)) return;
        var batch = Batch();
        AddAnnouncements(batch);
        await batch.RunAsync(ct);
    }

    /// <summary>
    /// Adds to the event's owner's row of <c>owner_event_counts</c>: one more event, and/or one more event
    /// holding lines of each of <paramref name="kinds"/> (<see cref="EventLineKinds"/> bits), so the
    /// points-ledger read takes totalEntries from that row instead of counting the owner's history.
    /// The counts after it are the owner's last numbers (<c>points_seq</c>, <c>currency_seq</c>).
    /// </summary>
    /// <remarks>
    /// The upsert locks the owner's counter row until commit. Every posting has already locked the
    /// owner's wallets by then (a new customer's registration excepted, which nobody else can
    /// touch yet), so within a posting counter locks always follow wallet locks. Postings that share
    /// a transaction (group commit) hold the locks of those before them, in no global order, so a
    /// posting after the first in such a transaction does not wait for a lock: it goes first in a
    /// later transaction instead, and two such transactions cannot deadlock (Storage/GroupCommit.cs).
    /// </remarks>
    private int AddOwnerEventCount((OwnerType Type, long Id) owner, StatementBatch batch, int events, int kinds, bool returnLatest = false)
    {
        var args = new Dictionary<string, object?> { ["org"] = OrgId, ["ownerType"] = owner.Type.ToWire(), ["ownerId"] = owner.Id, ["now"] = NowMs };
        AddOwnerEventCountArgs(args, events, kinds);
        return returnLatest ? batch.Query(OwnerEventCountSql("RETURNING last_event_at"), args) : batch.Execute(OwnerEventCountSql(""), args);
    }

    /// <summary>The upsert of <see cref="AddOwnerEventCount"/>; its other arguments are <c>@org</c>, <c>@ownerType</c>, <c>@ownerId</c> and <c>@now</c>.</summary>
    private static string OwnerEventCountSql(string returning) =>
        $$"""
        INSERT INTO owner_event_counts (org_id, owner_type, owner_id, events, points_events, currency_events, last_event_at)
        VALUES (@org, @ownerType, @ownerId, @events, @pointsEvents, @currencyEvents, @now)
        ON CONFLICT (org_id, owner_type, owner_id) DO UPDATE SET
            events = owner_event_counts.events + excluded.events,
            points_events = owner_event_counts.points_events + excluded.points_events,
            currency_events = owner_event_counts.currency_events + excluded.currency_events,
            last_event_at = {greatest}(owner_event_counts.last_event_at, excluded.last_event_at)
        {{returning}}
        """;

    private static void AddOwnerEventCountArgs(Dictionary<string, object?> args, int events, int kinds)
    {
        args["events"] = events;
        args["pointsEvents"] = (kinds & EventLineKinds.Points) != 0 ? 1 : 0;
        args["currencyEvents"] = (kinds & EventLineKinds.Currency) != 0 ? 1 : 0;
    }

    /// <summary>
    /// Adds a ledger line's insert to <paramref name="batch"/> (its row returns the entry id). The
    /// next statement added may refer to the new entry as <c>{lastEntryId}</c>.
    /// </summary>
    private int AddEntryInsert(StatementBatch batch, long eventId, Wallet wallet, EntryType type, Points points)
    {
        var historySeq = NoteEntry(batch, eventId, wallet, type, points);
        return batch.Query(
            $"""
            INSERT INTO ledger_entries (org_id, event_id, wallet_id, owner_type, owner_id, program_id, currency_id,
                category, entry_type, points, balance_after, created_at, tier, history_seq)
            VALUES (@org, @eventId, @walletId, @ownerType, @ownerId, @programId, @currencyId,
                @category, @entryType, @points, @balanceAfter, @now, @tier, {historySeq})
            RETURNING entry_id
            """,
            AddHistoryArgs(new Dictionary<string, object?>
            {
                ["org"] = OrgId, ["eventId"] = eventId, ["walletId"] = wallet.WalletId, ["ownerType"] = wallet.Key.OwnerType.ToWire(),
                ["ownerId"] = wallet.Key.OwnerId, ["programId"] = wallet.Key.ProgramId, ["currencyId"] = wallet.Key.CurrencyId,
                ["category"] = wallet.Key.Category.ToWire(), ["entryType"] = type.ToWire(), ["points"] = points.Thousandths,
                ["balanceAfter"] = wallet.Balance.Thousandths, ["now"] = NowMs, ["tier"] = StatementBatch.Typed(wallet.Tier),
            }, historySeq, wallet, eventId));
    }

    /// <summary>
    /// What a new ledger line of <paramref name="eventId"/> in <paramref name="wallet"/> changes besides
    /// its row: the event's kinds of lines and its owner's counts (statements in <paramref name="batch"/>
    /// for a kind the event was not written with), its announcement, and its number in the wallet's
    /// history. Returns the SQL of that number (<c>NULL</c> for a line the history does not show).
    /// </summary>
    private string NoteEntry(StatementBatch batch, long eventId, Wallet wallet, EntryType type, Points points)
    {
        // The event remembers which kinds of lines it holds (plain points, a currency), so the
        // points-ledger read can count and page a long history from the events index alone
        // instead of probing every event's lines.
        var kind = LineKindOf(wallet);
        _declaredKinds.Remove((eventId, kind));
        if (_eventKinds.Add((eventId, kind)))
        {
            if (!_eventOwners.TryGetValue(eventId, out var owner))
                throw new InvalidOperationException($"Event {eventId} was not inserted by this posting, so its owner's counts cannot be kept.");
            // Counted first, then numbered from the count, less the owner's events of the kind that
            // come after it (the event was stamped with this posting's time when it was inserted).
            AddOwnerEventCount(owner, batch, events: 0, kinds: kind);
            AddMakeRoomAfter(batch, owner, kind, eventId);
            var (seq, count) = kind == EventLineKinds.Points ? ("points_seq", "points_events") : ("currency_seq", "currency_events");
            batch.Execute(
                $"""
                UPDATE events SET line_kinds = line_kinds | @kind,
                    {seq} = (SELECT c.{count} FROM owner_event_counts c WHERE c.org_id = @org AND c.owner_type = @ownerType AND c.owner_id = @ownerId)
                        - ({LaterCount(kind, eventId)})
                WHERE org_id = @org AND event_id = @eventId
                """,
                new { kind, org = OrgId, eventId, ownerType = owner.Type.ToWire(), ownerId = owner.Id, now = NowMs });
        }
        _announcements.Line(eventId, wallet, type, points);
        return wallet.KeepsHistory && type != EntryType.OpeningBalance ? AddHistoryNumber(batch, wallet, eventId) : NoHistoryNumber;
    }

    /// <summary>
    /// Numbers a movement of <paramref name="wallet"/>'s history (a line of <paramref name="eventId"/>,
    /// or a voucher redemption: <paramref name="eventId"/> null, the event not inserted yet) and returns
    /// the SQL of its number, whose parameters (<c>@h...</c>) <see cref="AddHistoryArgs"/> adds.
    /// </summary>
    /// <remarks>
    /// The vault history pages by these numbers. A movement stamped after the wallet's latest (the
    /// usual case, read with the wallet's lock) takes the next number, with no statement. One stamped
    /// before it (a posting that took the wallet's lock after a later-stamped one) moves the
    /// movements after it one up, in <paramref name="batch"/>, and takes its place: the count less
    /// the movements after it.
    /// </remarks>
    private string AddHistoryNumber(StatementBatch batch, Wallet wallet, long? eventId)
    {
        wallet.HistoryCount++;
        wallet.HistoryUnsaved = true;
        if (TakesNextHistoryNumber(wallet))
        {
            wallet.HistoryLastAt = NowMs;
            wallet.HistoryLastIsThisPostings = true;
            return NextHistoryNumber;
        }
        // A new line's id is its wallet's highest (taken under the wallet's lock), and a new event's
        // id is the highest among the wallet's movements; of one millisecond, an existing event's
        // lines come after those of earlier events.
        var later = eventId is null ? "x.created_at > @hNow" : "(x.created_at > @hNow OR (x.created_at = @hNow AND x.event_id > @hEvent))";
        var lines = $"x.wallet_id = @hWallet AND x.history_seq IS NOT NULL AND {later}";
        var redemptions = $"""
            x.owner_type = @hOwnerType AND x.owner_id = @hOwner AND x.event_name = '{VoucherRedemptionEvent}'
                AND x.source_program_id = @hProgram AND x.history_seq IS NOT NULL AND {later}
            """;
        var args = AddHistoryArgs(new Dictionary<string, object?> { ["org"] = OrgId }, "@hCount @hNow", wallet, eventId);
        batch.Execute($"UPDATE ledger_entries SET history_seq = history_seq + 1 WHERE org_id = @org AND entry_id IN (SELECT x.entry_id FROM ledger_entries x WHERE x.org_id = @org AND {lines})", args);
        batch.Execute($"UPDATE events SET history_seq = history_seq + 1 WHERE org_id = @org AND event_id IN (SELECT x.event_id FROM events x WHERE x.org_id = @org AND {redemptions})", args);
        return $"@hCount - (SELECT COUNT(*) FROM ledger_entries x WHERE x.org_id = @org AND {lines}) - (SELECT COUNT(*) FROM events x WHERE x.org_id = @org AND {redemptions})";
    }

    /// <summary>The SQL of a history number that is the wallet's next (<see cref="AddHistoryNumber"/>), with no movement moved.</summary>
    private const string NextHistoryNumber = "@hCount";

    /// <summary>The SQL of a line's history number when its wallet's history does not show it.</summary>
    private const string NoHistoryNumber = "NULL";

    /// <summary>
    /// True when a movement of <paramref name="wallet"/> stamped now comes after every movement its
    /// history numbers (the usual case): it takes the next number and moves none (<see cref="AddHistoryNumber"/>).
    /// </summary>
    private bool TakesNextHistoryNumber(Wallet wallet) =>
        NowMs > wallet.HistoryLastAt || (NowMs == wallet.HistoryLastAt && wallet.HistoryLastIsThisPostings);

    /// <summary>Adds the parameters <paramref name="sql"/> (from <see cref="AddHistoryNumber"/>) uses to <paramref name="args"/>.</summary>
    private Dictionary<string, object?> AddHistoryArgs(Dictionary<string, object?> args, string sql, Wallet wallet, long? eventId)
    {
        if (!sql.Contains("@hCount", StringComparison.Ordinal)) return args;
        args["hCount"] = wallet.HistoryCount;
        if (!sql.Contains("@hNow", StringComparison.Ordinal)) return args;
        args["hNow"] = NowMs;
        args["hWallet"] = wallet.WalletId;
        args["hOwnerType"] = wallet.Key.OwnerType.ToWire();
        args["hOwner"] = wallet.Key.OwnerId;
        args["hProgram"] = wallet.Key.ProgramId;
        args["hEvent"] = eventId ?? 0;
        return args;
    }

    /// <summary>The event name of a voucher redemption, the one kind of event numbered in a wallet's history without a line.</summary>
    public const string VoucherRedemptionEvent = "VoucherRedemption";

    private async Task<long> InsertEntryAsync(long eventId, Wallet wallet, EntryType type, Points points)
    {
        var batch = Batch();
        var inserted = AddEntryInsert(batch, eventId, wallet, type, points);
        return (await batch.RunAsync()).SingleLong(inserted);
    }

    /// <summary>Saves the balance, with the wallet's history count and time (which are kept with it, so they cost no statement of their own).</summary>
    private void AddSaveBalance(StatementBatch batch, Wallet wallet) => batch.Execute(SaveBalanceSql, SaveBalanceArgs(wallet));

    private const string SaveBalanceSql =
        "UPDATE wallets SET balance = @balance, updated_at = @now, history_count = @historyCount, history_last_at = @historyLastAt, lots_due_from = @lotsDueFrom WHERE org_id = @org AND wallet_id = @walletId";

    /// <summary>The arguments of <see cref="SaveBalanceSql"/>: the wallet as it is in memory, which is then saved.</summary>
    private Dictionary<string, object?> SaveBalanceArgs(Wallet wallet)
    {
        wallet.HistoryUnsaved = false;
        return new Dictionary<string, object?>
        {
            ["balance"] = wallet.Balance.Thousandths, ["now"] = NowMs, ["historyCount"] = wallet.HistoryCount,
            ["historyLastAt"] = wallet.HistoryLastAt, ["lotsDueFrom"] = StatementBatch.Typed(wallet.LotsDueFrom),
            ["org"] = OrgId, ["walletId"] = wallet.WalletId,
        };
    }

    /// <summary>Saves the history count and time of the wallets whose balance update did not (a voucher redemption's wallet).</summary>
    private void AddSaveUnsavedHistories(StatementBatch batch)
    {
        foreach (var wallet in _locked.Values.Where(w => w.HistoryUnsaved))
        {
            wallet.HistoryUnsaved = false;
            batch.Execute(
                "UPDATE wallets SET history_count = @historyCount, history_last_at = @historyLastAt WHERE org_id = @org AND wallet_id = @walletId",
                new { historyCount = wallet.HistoryCount, historyLastAt = wallet.HistoryLastAt, org = OrgId, walletId = wallet.WalletId });
        }
    }

    /// <summary>
    /// Saves the balance after a credit. A wallet's first credit also starts its activity clock, so
    /// a wallet filled only by transfers or allocations still has a date a WHOLE_BALANCE expiry counts from.
    /// A credit that is a qualifying activity (<paramref name="restartsClock"/>) restarts the clock in the
    /// same statement, which spares the wallet a second update.
    /// </summary>
    private void AddSaveCreditedBalance(StatementBatch batch, Wallet wallet, bool restartsClock = false)
    {
        NoteCreditedBalance(wallet, restartsClock);
        batch.Execute(restartsClock
            ? "UPDATE wallets SET balance = @balance, updated_at = @now, last_activity_at = @now, history_count = @historyCount, history_last_at = @historyLastAt, lots_due_from = @lotsDueFrom WHERE org_id = @org AND wallet_id = @walletId"
            : "UPDATE wallets SET balance = @balance, updated_at = @now, last_activity_at = COALESCE(last_activity_at, @now), history_count = @historyCount, history_last_at = @historyLastAt, lots_due_from = @lotsDueFrom WHERE org_id = @org AND wallet_id = @walletId",
            new { balance = wallet.Balance.Thousandths, now = NowMs, historyCount = wallet.HistoryCount, historyLastAt = wallet.HistoryLastAt, lotsDueFrom = wallet.LotsDueFrom, org = OrgId, walletId = wallet.WalletId });
    }

    /// <summary>What saving the balance after a credit keeps in memory: the activity clock (see <see cref="AddSaveCreditedBalance"/>), the history saved.</summary>
    private void NoteCreditedBalance(Wallet wallet, bool restartsClock)
    {
        if (restartsClock) wallet.LastActivityAt = NowMs;
        else wallet.LastActivityAt ??= NowMs;
        wallet.HistoryUnsaved = false;
    }

    /// <summary>An OPENING_BALANCE line of zero: the wallet exists from this event on.</summary>
    public async Task<PostedEntry> OpenAsync(long eventId, WalletKey key)
    {
        var wallet = Locked(key);
        var entryId = await InsertEntryAsync(eventId, wallet, EntryType.OpeningBalance, Points.Zero);
        return new PostedEntry(entryId, wallet.WalletId, key, EntryType.OpeningBalance, Points.Zero, wallet.Balance, null, wallet.Tier);
    }

    /// <summary>
    /// Credits a locked wallet: one CREDIT line and one lot expiring at <paramref name="expiresAt"/>
    /// (null: never).
    /// </summary>
    public Task<PostedEntry> CreditAsync(long eventId, WalletKey key, Points points, long? expiresAt) =>
        CreditLotsAsync(eventId, key, [new LotPiece(points, expiresAt)]);

    /// <summary>
    /// Credits a locked wallet with one CREDIT line made of several lots, each with its own expiry (a
    /// transfer carries the expiry dates of the lots it took). A negative balance (debt) is paid off
    /// first, and each lot records what it paid.
    /// </summary>
    public async Task<PostedEntry> CreditLotsAsync(long eventId, WalletKey key, IReadOnlyList<LotPiece> pieces)
    {
        if (pieces.Count == 0 || pieces.Any(p => !p.Points.IsPositive))
            throw new LedgerException(ErrorCodes.InvalidPoints, "Points to credit must be positive.");
        var points = pieces.Aggregate(Points.Zero, (sum, p) => sum + p.Points);
        var wallet = Locked(key);
        var debt = wallet.Balance.IsNegative ? -wallet.Balance : Points.Zero;
        wallet.Balance += points;
        var expiresAt = pieces.Count == 1 ? pieces[0].ExpiresAt : pieces.Min(p => p.ExpiresAt);

        if (pieces.Count == 1 && !debt.IsPositive)
        {
            // The common credit, in one round trip: the line, its lot and the balance.
            var batch = Batch();
            var inserted = AddPlainCredit(batch, eventId, wallet, points, expiresAt);
            var entryId = (await batch.RunAsync()).SingleLong(inserted);
            return new PostedEntry(entryId, wallet.WalletId, key, EntryType.Credit, points, wallet.Balance, expiresAt, wallet.Tier);
        }

        var creditEntryId = await InsertEntryAsync(eventId, wallet, EntryType.Credit, points);
        long? debtLotId = debt.IsPositive ? await DebtLotAsync(wallet) : null;
        var writes = Batch();
        foreach (var piece in pieces)
        {
            wallet.LotHolds(piece.ExpiresAt);
            var settled = Points.Min(piece.Points, debt);
            debt -= settled;
            if (!settled.IsPositive)
            {
                writes.Execute(
                    """
                    INSERT INTO lots (org_id, wallet_id, credit_entry_id, earned_at, expires_at, original, remaining, is_debt)
                    VALUES (@org, @walletId, @entryId, @now, @expiresAt, @points, @points, 0)
                    """,
                    new { org = OrgId, walletId = wallet.WalletId, entryId = creditEntryId, now = NowMs, expiresAt = piece.ExpiresAt, points = piece.Points.Thousandths });
                continue;
            }

            // The lot gave `settled` to the debt lot: a movement out of the new lot and a negative
            // movement (a repayment) on the debt lot, so every lot keeps
            // remaining = original - sum(movements). The movements need the new lot's id.
            var lotId = await ScalarAsync<long>(
                """
                INSERT INTO lots (org_id, wallet_id, credit_entry_id, earned_at, expires_at, original, remaining, is_debt)
                VALUES (@org, @walletId, @entryId, @now, @expiresAt, @original, @remaining, 0)
                RETURNING lot_id
                """,
                new
                {
                    org = OrgId, walletId = wallet.WalletId, entryId = creditEntryId, now = NowMs, expiresAt = piece.ExpiresAt,
                    original = piece.Points.Thousandths, remaining = (piece.Points - settled).Thousandths,
                });
            writes.Execute("UPDATE lots SET remaining = remaining + @settled WHERE org_id = @org AND lot_id = @lot",
                new { settled = settled.Thousandths, org = OrgId, lot = debtLotId });
            AddMovement(writes, creditEntryId, lotId, settled);
            AddMovement(writes, creditEntryId, debtLotId!.Value, -settled);
        }

        AddSaveCreditedBalance(writes, wallet);
        await writes.RunAsync();
        return new PostedEntry(creditEntryId, wallet.WalletId, key, EntryType.Credit, points, wallet.Balance, expiresAt, wallet.Tier);
    }

    /// <summary>
    /// Adds a credit of a wallet that owes nothing to <paramref name="batch"/>: the line, its one lot
    /// (which names the line just inserted as <c>{lastEntryId}</c>, so it must follow it directly)
    /// and the balance. The caller has already added the points to <c>wallet.Balance</c>.
    /// </summary>
    private int AddPlainCredit(StatementBatch batch, long eventId, Wallet wallet, Points points, long? expiresAt, bool restartsClock = false)
    {
        var inserted = AddEntryInsert(batch, eventId, wallet, EntryType.Credit, points);
        batch.Execute(
            """
            INSERT INTO lots (org_id, wallet_id, credit_entry_id, earned_at, expires_at, original, remaining, is_debt)
            VALUES (@org, @walletId, {lastEntryId}, @now, @expiresAt, @points, @points, 0)
            """,
            new { org = OrgId, walletId = wallet.WalletId, now = NowMs, expiresAt, points = points.Thousandths });
        wallet.LotHolds(expiresAt);
        AddSaveCreditedBalance(batch, wallet, restartsClock);
        return inserted;
    }

    /// <summary>
    /// Credits several locked wallets for one event (a bill's points and currencies), each as
    /// <see cref="CreditAsync"/> would. When no wallet owes a debt, all the credits and whatever
    /// <paramref name="andThen"/> adds go to the database in one round trip; otherwise they go one by one.
    /// When the credits are a qualifying activity (<paramref name="restartActivity"/>), each wallet's
    /// activity clock restarts now with its balance, in the same statement (on the way that batches).
    /// </summary>
    public async Task<IReadOnlyList<PostedEntry>> CreditEachAsync(long eventId, IReadOnlyList<(WalletKey Key, Points Points, long? ExpiresAt)> credits,
        Action<StatementBatch>? andThen = null, bool restartActivity = false)
    {
        if (credits.Any(c => !c.Points.IsPositive))
            throw new LedgerException(ErrorCodes.InvalidPoints, "Points to credit must be positive.");
        if (credits.Any(c => Locked(c.Key).Balance.IsNegative))
        {
            var posted = new List<PostedEntry>();
            foreach (var (key, points, expiresAt) in credits) posted.Add(await CreditAsync(eventId, key, points, expiresAt));
            var rest = Batch();
            andThen?.Invoke(rest);
            await rest.RunAsync();
            return posted;
        }

        var wallets = credits.Select(c => Locked(c.Key)).ToList();
        if (CreditTogether(wallets, w => _eventKinds.Contains((eventId, LineKindOf(w)))))
            return await CreditTogetherAsync(eventId, credits, wallets, andThen, restartActivity);

        var batch = Batch();
        var pending = new List<(int Inserted, Wallet Wallet, WalletKey Key, Points Points, Points BalanceAfter, long? ExpiresAt)>();
        foreach (var (key, points, expiresAt) in credits)
        {
            var wallet = Locked(key);
            wallet.Balance += points;
            pending.Add((AddPlainCredit(batch, eventId, wallet, points, expiresAt, restartActivity), wallet, key, points, wallet.Balance, expiresAt));
        }
        andThen?.Invoke(batch);
        var results = await batch.RunAsync();
        return pending.Select(p => new PostedEntry(results.SingleLong(p.Inserted), p.Wallet.WalletId, p.Key, EntryType.Credit, p.Points, p.BalanceAfter, p.ExpiresAt, p.Wallet.Tier)).ToList();
    }

    /// <summary>
    /// <see cref="CreditEachAsync"/> on a database that writes rows from arrays
    /// (<see cref="SqlDialect.WritesRowsFromArrays"/>), for distinct wallets that owe nothing, whose
    /// event already counts their kinds of lines and whose history numbers them last: every line,
    /// lot and balance in one statement, instead of three statements per wallet. Each row holds what
    /// <see cref="AddPlainCredit"/> would have written, and the posting keeps the same account of it.
    /// </summary>
    private async Task<IReadOnlyList<PostedEntry>> CreditTogetherAsync(long eventId, IReadOnlyList<(WalletKey Key, Points Points, long? ExpiresAt)> credits,
        IReadOnlyList<Wallet> wallets, Action<StatementBatch>? andThen, bool restartActivity)
    {
        var batch = Batch();
        var posted = AddCreditTogether(batch, eventId, credits, wallets, andThen, restartActivity);
        return posted(await batch.RunAsync(), eventId);
    }

    /// <summary>
    /// Adds <see cref="CreditTogetherAsync"/>'s statement to <paramref name="batch"/>, then
    /// <paramref name="andThen"/>'s; returns what gives the lines posted, from the batch's results and
    /// the event's id. With <paramref name="eventId"/> null, the lines name the event inserted last
    /// before them in <paramref name="batch"/> (<c>{lastEventId}</c>), whose id the caller reads from
    /// the same results.
    /// </summary>
    private Func<BatchResults, long, IReadOnlyList<PostedEntry>> AddCreditTogether(StatementBatch batch, long? eventId,
        IReadOnlyList<(WalletKey Key, Points Points, long? ExpiresAt)> credits, IReadOnlyList<Wallet> wallets, Action<StatementBatch>? andThen,
        bool restartActivity)
    {
        var n = credits.Count;
        var walletIds = new long[n];
        var ownerTypes = new string[n];
        var ownerIds = new long[n];
        var programIds = new long[n];
        var currencyIds = new long[n];
        var categories = new string[n];
        var points = new long[n];
        var balances = new long[n];
        var tiers = new string?[n];
        var historySeqs = new long?[n];
        var expiries = new long?[n];
        var historyCounts = new long[n];
        var historyLastAts = new long[n];
        var lotsDueFrom = new long?[n];
        var statementsBefore = batch.Count;
        for (var i = 0; i < n; i++)
        {
            var (key, credit, expiresAt) = credits[i];
            var wallet = wallets[i];
            wallet.Balance += credit;
            // The bookkeeping of AddPlainCredit, in its order, but for the line's account in its event
            // (NoteEntry's), which needs the event's id and is kept below, once the results give it.
            // None of it needs a statement here (the event counts the kind, the history numbers the
            // line last), which the count below checks.
            var historySeq = wallet.KeepsHistory ? AddHistoryNumber(batch, wallet, eventId) : NoHistoryNumber;
            wallet.LotHolds(expiresAt);
            NoteCreditedBalance(wallet, restartActivity);
            walletIds[i] = wallet.WalletId;
            ownerTypes[i] = key.OwnerType.ToWire();
            ownerIds[i] = key.OwnerId;
            programIds[i] = key.ProgramId;
            currencyIds[i] = key.CurrencyId;
            categories[i] = key.Category.ToWire();
            points[i] = credit.Thousandths;
            balances[i] = wallet.Balance.Thousandths;
            tiers[i] = wallet.Tier;
            historySeqs[i] = historySeq switch
            {
                NoHistoryNumber => null,
                NextHistoryNumber => wallet.HistoryCount,
                _ => throw new InvalidOperationException($"Wallet {wallet.WalletId}'s line was numbered out of order in a credit written with others."),
            };
            expiries[i] = expiresAt;
            historyCounts[i] = wallet.HistoryCount;
            historyLastAts[i] = wallet.HistoryLastAt;
            lotsDueFrom[i] = wallet.LotsDueFrom;
        }
        if (batch.Count != statementsBefore)
            throw new InvalidOperationException("A credit written with others needed statements of its own.");
        var args = new Dictionary<string, object?>
        {
            ["walletIds"] = walletIds, ["ownerTypes"] = ownerTypes, ["ownerIds"] = ownerIds, ["programIds"] = programIds,
            ["currencyIds"] = currencyIds, ["categories"] = categories, ["points"] = points, ["balances"] = balances, ["tiers"] = tiers,
            ["historySeqs"] = historySeqs, ["expiries"] = expiries, ["historyCounts"] = historyCounts, ["historyLastAts"] = historyLastAts,
            ["lotsDueFrom"] = lotsDueFrom, ["org"] = OrgId, ["entryType"] = EntryType.Credit.ToWire(), ["now"] = NowMs,
            ["restartActivity"] = restartActivity,
        };
        if (eventId is { } known) args["eventId"] = known;
        var eventSql = eventId is null ? "{lastEventId}" : "@eventId";
        // The rows in their order (WITH ORDINALITY, ORDER BY x.ord): PostgreSQL draws each line's id
        // as the sorted rows reach the insert, so the lines take their ids in the credits' order, as
        // one statement each would, and a read lists an event's lines by id. (It does so in practice,
        // not by a documented rule; nothing here depends on the order RETURNING gives, the ids are
        // matched to their wallets.)
        var inserted = batch.Query(
            $"""
            WITH x AS (
                SELECT * FROM unnest(@walletIds::bigint[], @ownerTypes::text[], @ownerIds::bigint[], @programIds::bigint[], @currencyIds::bigint[],
                    @categories::text[], @points::bigint[], @balances::bigint[], @tiers::text[], @historySeqs::bigint[], @expiries::bigint[],
                    @historyCounts::bigint[], @historyLastAts::bigint[], @lotsDueFrom::bigint[])
                    WITH ORDINALITY AS x(wallet_id, owner_type, owner_id, program_id, currency_id, category, points, balance_after, tier, history_seq,
                        expires_at, history_count, history_last_at, lots_due_from, ord)
            ), e AS (
                INSERT INTO ledger_entries (org_id, event_id, wallet_id, owner_type, owner_id, program_id, currency_id,
                    category, entry_type, points, balance_after, created_at, tier, history_seq)
                SELECT @org, {eventSql}, x.wallet_id, x.owner_type, x.owner_id, x.program_id, x.currency_id,
                    x.category, @entryType, x.points, x.balance_after, @now, x.tier, x.history_seq
                FROM x ORDER BY x.ord
                RETURNING entry_id, wallet_id
            ), l AS (
                INSERT INTO lots (org_id, wallet_id, credit_entry_id, earned_at, expires_at, original, remaining, is_debt)
                SELECT @org, x.wallet_id, e.entry_id, @now, x.expires_at, x.points, x.points, 0
                FROM x JOIN e ON e.wallet_id = x.wallet_id ORDER BY x.ord
            ), w AS (
                UPDATE wallets SET balance = x.balance_after, updated_at = @now,
                    last_activity_at = CASE WHEN @restartActivity THEN @now ELSE COALESCE(wallets.last_activity_at, @now) END,
                    history_count = x.history_count, history_last_at = x.history_last_at, lots_due_from = x.lots_due_from
                FROM x WHERE wallets.org_id = @org AND wallets.wallet_id = x.wallet_id
            )
            SELECT wallet_id, entry_id FROM e
            """,
            args);
        andThen?.Invoke(batch);
        return (results, postedFor) =>
        {
            var entryIds = results.Rows(inserted).ToDictionary(row => AsLong(row[0]), row => AsLong(row[1]));
            if (entryIds.Count != n)
                throw new InvalidOperationException($"Crediting {n} wallets together wrote {entryIds.Count} lines.");
            for (var i = 0; i < n; i++)
            {
                // NoteEntry's account of the line: its event was written counting its kind.
                var kind = LineKindOf(wallets[i]);
                if (!_eventKinds.Contains((postedFor, kind)))
                    throw new InvalidOperationException($"Event {postedFor} was credited lines of a kind it was not written with.");
                _declaredKinds.Remove((postedFor, kind));
                _announcements.Line(postedFor, wallets[i], EntryType.Credit, credits[i].Points);
            }
            return [.. credits.Select((c, i) => new PostedEntry(entryIds[walletIds[i]], walletIds[i], c.Key, EntryType.Credit, c.Points,
                new Points(balances[i]), c.ExpiresAt, tiers[i]))];
        };
    }

    /// <summary>
    /// Inserts <paramref name="e"/> (with <paramref name="then"/>, as <see cref="InsertEventAsync"/>)
    /// and credits the locked wallets of <paramref name="credits"/> for it, as
    /// <see cref="InsertEventAsync"/> and then <see cref="CreditEachAsync"/> would, in one round trip
    /// where it can: where rows go from one statement to the next (PostgreSQL), for distinct wallets
    /// that owe nothing, whose kinds of lines the event declares and whose history numbers them last,
    /// the lines, lots and balances are written together (<see cref="CreditTogetherAsync"/>) right
    /// after the event's insert, naming it as <c>{lastEventId}</c>. A bill of points and currencies
    /// is then three round trips (its customer, the wallets' lock, the event with its lines), not
    /// four; a batch run side by side (<see cref="LockStep"/>) takes as many rounds as its slowest write.
    /// </summary>
    public async Task<(long EventId, IReadOnlyList<PostedEntry> Entries)> InsertEventAndCreditAsync(NewEvent e, (string Sql, object? Args)? then,
        IReadOnlyList<(WalletKey Key, Points Points, long? ExpiresAt)> credits, Action<StatementBatch>? andThen = null, bool restartActivity = false)
    {
        var wallets = credits.Select(c => Locked(c.Key)).ToList();
        if (e.HistoryWallet is not null || credits.Any(c => !c.Points.IsPositive) || !CreditTogether(wallets, w => (e.LineKinds & LineKindOf(w)) != 0))
        {
            var id = await InsertEventAsync(e, then);
            return (id, await CreditEachAsync(id, credits, andThen, restartActivity));
        }
        Func<BatchResults, long, IReadOnlyList<PostedEntry>>? posted = null;
        var (eventId, results) = await InsertEventWithAsync(e, then,
            withInsert: batch => posted = AddCreditTogether(batch, eventId: null, credits, wallets, andThen, restartActivity));
        return (eventId, posted!(results, eventId));
    }

    /// <summary>
    /// True when credits of the locked <paramref name="wallets"/> go as one statement
    /// (<see cref="CreditTogetherAsync"/>): on a database that writes rows from arrays, for two or more
    /// distinct wallets that owe nothing, whose event counts their kinds of lines
    /// (<paramref name="eventCountsKind"/>) and whose history numbers them last.
    /// </summary>
    private bool CreditTogether(IReadOnlyList<Wallet> wallets, Func<Wallet, bool> eventCountsKind) =>
        Dialect.WritesRowsFromArrays && wallets.Count > 1 && wallets.Distinct().Count() == wallets.Count
        && wallets.All(w => !w.Balance.IsNegative && eventCountsKind(w) && (!w.KeepsHistory || TakesNextHistoryNumber(w)));

    /// <summary>The kind of lines a wallet's line is (<see cref="EventLineKinds"/>): plain points or a currency.</summary>
    private static int LineKindOf(Wallet wallet) =>
        wallet.Key.CurrencyId == WalletKey.PlainPoints ? EventLineKinds.Points : EventLineKinds.Currency;

    /// <summary>
    /// How many of a wallet's open lots of each kind, dated and undated, a debit reads before it
    /// knows whether they cover it. A debit usually takes a lot or a few, while a member who earns
    /// more than they redeem keeps many lots open, and reading them all makes a debit's cost grow
    /// with them. On PostgreSQL, under the benchmark's write mix on a database where a redemption's
    /// wallet held 77-93 open lots, reading them all cost 81-97 buffers and 0.54-0.76 ms a
    /// redemption, reading 16 of each kind 18 buffers and 0.19 ms; for a wallet of 21,024 (the
    /// seed's largest), 369 buffers and a 2 MB sort against 7. A debit the lots read first do not
    /// cover reads the rest.
    /// </summary>
    private const int OpenLotsReadFirst = 16;

    /// <summary>
    /// The first <see cref="OpenLotsReadFirst"/> dated and the first undated open lots of a wallet, in
    /// one statement: each kind a range of ix_lots_open read in its order and cut off, on both
    /// databases (they sort NULL apart, so one ORDER BY would be a sort of every open lot on one).
    /// A UNION ALL keeps no order of its own, so the caller puts each kind in debit order.
    /// </summary>
    private static readonly string FirstOpenLotsSql =
        $"""
        SELECT lot_id, remaining, expires_at FROM (
            SELECT lot_id, remaining, expires_at FROM lots
            WHERE org_id = @org AND wallet_id = @walletId AND remaining > 0 AND is_debt = 0 AND expires_at IS NOT NULL
            ORDER BY expires_at, lot_id LIMIT {OpenLotsReadFirst}) dated
        UNION ALL
        SELECT lot_id, remaining, expires_at FROM (
            SELECT lot_id, remaining, expires_at FROM lots
            WHERE org_id = @org AND wallet_id = @walletId AND remaining > 0 AND is_debt = 0 AND expires_at IS NULL
            ORDER BY expires_at, lot_id LIMIT {OpenLotsReadFirst}) undated
        """;

    private static OpenLot ToOpenLot(object?[] row) =>
        new(AsLong(row[0]), new Points(AsLong(row[1])), row[2] is null ? null : AsLong(row[2]));

    /// <summary>
    /// Debits a locked wallet, consuming its lots earliest expiry first (lots that never expire last).
    /// Returns the lots consumed, so a transfer can carry their expiry dates across.
    /// </summary>
    public async Task<DebitResult> DebitAsync(long eventId, WalletKey key, Points points, bool allowNegative)
    {
        var wallet = CheckedDebit(key, points, allowNegative);
        wallet.Balance -= points;
        // The line and the wallet's first open lots, dated and undated, in one round trip.
        var batch = Batch();
        var inserted = AddEntryInsert(batch, eventId, wallet, EntryType.Debit, points);
        var firstOpen = batch.Query(FirstOpenLotsSql, new { org = OrgId, walletId = wallet.WalletId });
        var results = await batch.RunAsync();
        var entryId = results.SingleLong(inserted);
        var lots = await LotsToDebitAsync(wallet, points, results.Rows(firstOpen));

        var writes = Batch();
        var consumed = await ConsumeAsync(writes, entryId, wallet, lots, points);
        await writes.RunAsync();
        return new DebitResult(new PostedEntry(entryId, wallet.WalletId, key, EntryType.Debit, points, wallet.Balance, null, wallet.Tier), consumed);
    }

    /// <summary>
    /// Inserts <paramref name="e"/> and debits the locked wallet of <paramref name="key"/> for it, as
    /// <see cref="InsertEventAsync"/> and then
    /// <see cref="DebitAsync"/> would, in one round trip less where rows go from one statement to the
    /// next (<see cref="SqlDialect.WritesRowsFromArrays"/>, PostgreSQL): the wallet's first open lots
    /// are read in the event's round trip (they do not depend on it), and the debit's line goes with
    /// the lots it takes, whose movements name it as <c>{lastEntryId}</c>. A redemption is then three
    /// round trips (the wallet's lock, the event, the line with its lots), as a bill is, not
    /// four: a batch run side by side (<see cref="LockStep"/>) takes as many rounds as its slowest write.
    /// A debit the balance does not cover is refused before the event is written.
    /// </summary>
    public async Task<(long EventId, DebitResult Debit)> InsertEventAndDebitAsync(NewEvent e, WalletKey key, Points points, bool allowNegative)
    {
        if (!Dialect.WritesRowsFromArrays)
        {
            var id = await InsertEventAsync(e);
            return (id, await DebitAsync(id, key, points, allowNegative));
        }
        var wallet = CheckedDebit(key, points, allowNegative);
        var firstOpen = -1;
        var (eventId, read) = await InsertEventWithAsync(e, then: null,
            withInsert: batch => firstOpen = batch.Query(FirstOpenLotsSql, new { org = OrgId, walletId = wallet.WalletId }));
        wallet.Balance -= points;
        var lots = await LotsToDebitAsync(wallet, points, read.Rows(firstOpen));

        var writes = Batch();
        var inserted = AddEntryInsert(writes, eventId, wallet, EntryType.Debit, points);
        // Everything ConsumeAsync adds comes after the line's insert, and inserts no other line.
        var consumed = await ConsumeAsync(writes, entryId: null, wallet, lots, points);
        var entryId = (await writes.RunAsync()).SingleLong(inserted);
        return (eventId, new DebitResult(new PostedEntry(entryId, wallet.WalletId, key, EntryType.Debit, points, wallet.Balance, null, wallet.Tier), consumed));
    }

    /// <summary>The locked wallet of <paramref name="key"/>, once a debit of <paramref name="points"/> from it is allowed.</summary>
    private Wallet CheckedDebit(WalletKey key, Points points, bool allowNegative)
    {
        if (!points.IsPositive) throw new LedgerException(ErrorCodes.InvalidPoints, "Points to debit must be positive.");
        var wallet = Locked(key);
        if (wallet.Balance < points && !allowNegative)
        {
            throw new LedgerException(ErrorCodes.InsufficientBalance,
                $"The balance is {wallet.Balance}, less than the {points} asked for.", 422);
        }
        return wallet;
    }

    /// <summary>
    /// The open lots a debit of <paramref name="points"/> takes from, in debit order, from the first
    /// ones read (<see cref="FirstOpenLotsSql"/>'s rows), and all of them when those do not cover it.
    /// </summary>
    private async Task<IReadOnlyList<OpenLot>> LotsToDebitAsync(Wallet wallet, Points points, IEnumerable<object?[]> firstOpen)
    {
        var read = firstOpen.Select(ToOpenLot).ToList();
        var datedLots = read.Where(l => l.ExpiresAt is not null).Order(LotArithmetic.DebitOrder).ToList();
        var undatedLots = read.Where(l => l.ExpiresAt is null).Order(LotArithmetic.DebitOrder).ToList();

        // In debit order every dated lot comes before the undated ones, so the undated lots read
        // continue the dated ones only when no dated lot was left unread.
        var allDatedRead = datedLots.Count < OpenLotsReadFirst;
        IReadOnlyList<OpenLot> lots = allDatedRead ? [.. datedLots, .. undatedLots] : datedLots;
        var allRead = allDatedRead && undatedLots.Count < OpenLotsReadFirst;
        if (allRead || lots.Aggregate(Points.Zero, (sum, lot) => sum + lot.Remaining) >= points) return lots;
        var rest = Batch();
        var every = rest.Query(
            $"""
            SELECT lot_id, remaining, expires_at FROM lots
            WHERE org_id = @org AND wallet_id = @walletId AND remaining > 0 AND is_debt = 0
            ORDER BY {LotArithmetic.DebitOrderSql}
            """,
            new { org = OrgId, walletId = wallet.WalletId });
        return (await rest.RunAsync()).Rows(every).Select(ToOpenLot).ToList();
    }

    /// <summary>
    /// Debits exactly the given lots of a locked wallet (an expiry takes the lots that are due, a
    /// conversion the promised lot of one bill), never more than a lot still holds.
    /// </summary>
    public async Task<DebitResult> DebitLotsAsync(long eventId, WalletKey key, IReadOnlyList<ConsumedLot> take)
    {
        if (take.Count == 0 || take.Any(t => !t.Points.IsPositive))
            throw new LedgerException(ErrorCodes.InvalidPoints, "Points to debit must be positive.");
        var wallet = Locked(key);
        var reads = Batch();
        var found = take.Select(t => reads.Query(
            "SELECT lot_id, remaining, expires_at FROM lots WHERE org_id = @org AND lot_id = @lot AND wallet_id = @walletId AND is_debt = 0",
            new { org = OrgId, lot = t.LotId, walletId = wallet.WalletId })).ToList();
        var readResults = await reads.RunAsync();
        var lots = new List<OpenLot>();
        for (var i = 0; i < take.Count; i++)
        {
            var t = take[i];
            var row = readResults.Rows(found[i]).SingleOrDefault();
            if (row is null || AsLong(row[1]) < t.Points.Thousandths)
                throw new InvalidOperationException($"Lot {t.LotId} of wallet {wallet.WalletId} does not hold {t.Points}.");
            lots.Add(new OpenLot(t.LotId, t.Points, row[2] is null ? null : AsLong(row[2])));
        }

        var points = take.Aggregate(Points.Zero, (sum, t) => sum + t.Points);
        wallet.Balance -= points;
        var entryId = await InsertEntryAsync(eventId, wallet, EntryType.Debit, points);
        var writes = Batch();
        var consumed = await ConsumeAsync(writes, entryId, wallet, lots, points);
        await writes.RunAsync();
        return new DebitResult(new PostedEntry(entryId, wallet.WalletId, key, EntryType.Debit, points, wallet.Balance, null, wallet.Tier), consumed);
    }

    /// <summary>
    /// Credits a locked wallet by putting points back into the lots a debit took them from (a
    /// reversal): one CREDIT line, and a negative movement on each lot, so every lot keeps
    /// remaining = original - sum(movements) and no lot ever holds more than it was credited.
    /// A restored lot keeps its own expiry date. A debt is paid off first, as by any credit.
    /// </summary>
    public async Task<PostedEntry> RestoreLotsAsync(long eventId, WalletKey key, IReadOnlyList<ConsumedLot> restore)
    {
        if (restore.Count == 0 || restore.Any(r => !r.Points.IsPositive))
            throw new LedgerException(ErrorCodes.InvalidPoints, "Points to restore must be positive.");
        var points = restore.Aggregate(Points.Zero, (sum, r) => sum + r.Points);
        var wallet = Locked(key);
        var debt = wallet.Balance.IsNegative ? -wallet.Balance : Points.Zero;
        wallet.Balance += points;
        var entryId = await InsertEntryAsync(eventId, wallet, EntryType.Credit, points);
        foreach (var r in restore)
        {
            var (isDebt, expiresAt) = await QuerySingleOrDefaultAsync<(long IsDebt, long? ExpiresAt)>(
                "SELECT is_debt, expires_at FROM lots WHERE org_id = @org AND lot_id = @lot AND wallet_id = @walletId",
                new { org = OrgId, lot = r.LotId, walletId = wallet.WalletId });
            if (isDebt != 0)
            {
                // Points the debit took on credit go back to the debt as far as it is still owed; what
                // later credits already repaid comes back as a fresh lot that never expires.
                var toDebt = Points.Min(r.Points, debt);
                if (toDebt.IsPositive)
                {
                    await ExecuteAsync("UPDATE lots SET remaining = remaining + @points WHERE org_id = @org AND lot_id = @lot",
                        new { points = toDebt.Thousandths, org = OrgId, lot = r.LotId });
                    await InsertMovementAsync(entryId, r.LotId, -toDebt);
                    debt -= toDebt;
                }
                var excess = r.Points - toDebt;
                if (excess.IsPositive)
                {
                    await ExecuteAsync(
                        """
                        INSERT INTO lots (org_id, wallet_id, credit_entry_id, earned_at, expires_at, original, remaining, is_debt)
                        VALUES (@org, @walletId, @entryId, @now, NULL, @points, @points, 0)
                        """,
                        new { org = OrgId, walletId = wallet.WalletId, entryId, now = NowMs, points = excess.Thousandths });
                }
                continue;
            }

            await ExecuteAsync("UPDATE lots SET remaining = remaining + @points WHERE org_id = @org AND lot_id = @lot",
                new { points = r.Points.Thousandths, org = OrgId, lot = r.LotId });
            // The refilled lot keeps its date as it is now (a rolling expiry may have moved it since the
            // debit, so not the date the debit saw): lots may be due from then on.
            wallet.LotHolds(expiresAt);
            await InsertMovementAsync(entryId, r.LotId, -r.Points);
            var settled = Points.Min(r.Points, debt);
            if (settled.IsPositive)
            {
                var debtLot = await DebtLotAsync(wallet);
                debt -= settled;
                await ExecuteAsync("UPDATE lots SET remaining = remaining - @settled WHERE org_id = @org AND lot_id = @lot",
                    new { settled = settled.Thousandths, org = OrgId, lot = r.LotId });
                await ExecuteAsync("UPDATE lots SET remaining = remaining + @settled WHERE org_id = @org AND lot_id = @lot",
                    new { settled = settled.Thousandths, org = OrgId, lot = debtLot });
                await InsertMovementAsync(entryId, r.LotId, settled);
                await InsertMovementAsync(entryId, debtLot, -settled);
            }
        }

        var save = Batch();
        AddSaveBalance(save, wallet);
        await save.RunAsync();
        return new PostedEntry(entryId, wallet.WalletId, key, EntryType.Credit, points, wallet.Balance, null, wallet.Tier);
    }

    /// <summary>
    /// Takes <paramref name="points"/> from the lots in the order given (<see cref="LotArithmetic.Take"/>),
    /// adding the lot updates, the movements and the wallet's balance (already debited in memory) to
    /// <paramref name="writes"/>; any shortfall becomes debt. The movements name the debit's line <paramref name="entryId"/>,
    /// or, when null, the line inserted last before them in <paramref name="writes"/> (<c>{lastEntryId}</c>).
    /// </summary>
    private async Task<List<ConsumedLot>> ConsumeAsync(StatementBatch writes, long? entryId, Wallet wallet, IEnumerable<OpenLot> lots, Points points)
    {
        var (taken, shortfall) = LotArithmetic.Take(lots, points);
        var consumed = new List<ConsumedLot>(taken);
        // Every lot taken and its movement, and the wallet's balance, in one statement (see
        // SqlDialect.WritesRowsFromArrays), the movements in the order taken. Only for distinct lots:
        // an UPDATE ... FROM applies one of two rows for the same lot, while both movements would be written.
        if (Dialect.WritesRowsFromArrays && taken.Count > 0 && taken.Select(t => t.LotId).Distinct().Count() == taken.Count)
        {
            var args = SaveBalanceArgs(wallet);
            args["lots"] = taken.Select(t => t.LotId).ToArray();
            args["takes"] = taken.Select(t => t.Points.Thousandths).ToArray();
            if (entryId is { } id) args["entryId"] = id;
            writes.Execute(
                $"""
                WITH t AS (
                    SELECT * FROM unnest(@lots::bigint[], @takes::bigint[]) WITH ORDINALITY AS t(lot_id, points, ord)
                ), u AS (
                    UPDATE lots SET remaining = lots.remaining - t.points FROM t WHERE lots.org_id = @org AND lots.lot_id = t.lot_id
                ), w AS (
                    {SaveBalanceSql}
                )
                INSERT INTO lot_movements (org_id, entry_id, lot_id, points)
                SELECT @org, {EntryIdSql(entryId)}, t.lot_id, t.points FROM t ORDER BY t.ord
                """,
                args);
        }
        else
        {
            foreach (var take in taken)
            {
                writes.Execute("UPDATE lots SET remaining = remaining - @take WHERE org_id = @org AND lot_id = @lot",
                    new { take = take.Points.Thousandths, org = OrgId, lot = take.LotId });
                AddMovement(writes, entryId, take.LotId, take.Points);
            }
            AddSaveBalance(writes, wallet);
        }

        if (shortfall.IsPositive)
        {
            // Only reachable when a negative balance is allowed: the shortfall becomes debt.
            var debtLot = await DebtLotAsync(wallet);
            writes.Execute("UPDATE lots SET remaining = remaining - @take WHERE org_id = @org AND lot_id = @lot",
                new { take = shortfall.Thousandths, org = OrgId, lot = debtLot });
            AddMovement(writes, entryId, debtLot, shortfall);
            consumed.Add(new ConsumedLot(debtLot, shortfall, null));
        }
        return consumed;
    }

    private async Task<long> DebtLotAsync(Wallet wallet)
    {
        var existing = await ScalarAsync<long?>(
            "SELECT lot_id FROM lots WHERE org_id = @org AND wallet_id = @walletId AND is_debt = 1",
            new { org = OrgId, walletId = wallet.WalletId });
        if (existing is { } id) return id;
        return await ScalarAsync<long>(
            """
            INSERT INTO lots (org_id, wallet_id, credit_entry_id, earned_at, expires_at, original, remaining, is_debt)
            VALUES (@org, @walletId, NULL, @now, NULL, 0, 0, 1)
            RETURNING lot_id
            """,
            new { org = OrgId, walletId = wallet.WalletId, now = NowMs });
    }

    private Task InsertMovementAsync(long entryId, long lotId, Points points)
    {
        var batch = Batch();
        AddMovement(batch, entryId, lotId, points);
        return batch.RunAsync();
    }

    private void AddMovement(StatementBatch batch, long? entryId, long lotId, Points points)
    {
        var sql = $"INSERT INTO lot_movements (org_id, entry_id, lot_id, points) VALUES (@org, {EntryIdSql(entryId)}, @lotId, @points)";
        if (entryId is { } id) batch.Execute(sql, new { org = OrgId, entryId = id, lotId, points = points.Thousandths });
        else batch.Execute(sql, new { org = OrgId, lotId, points = points.Thousandths });
    }

    /// <summary>A movement's line in SQL: <c>@entryId</c>, or with none the line inserted last (<c>{lastEntryId}</c>).</summary>
    private static string EntryIdSql(long? entryId) => entryId is null ? "{lastEntryId}" : "@entryId";

    /// <summary>Allocates the next id of a per-organization sequence (customers, programs, groups...).</summary>
    public async Task<long> NextIdAsync(string sequence)
    {
        return await ScalarAsync<long>(
            """
            INSERT INTO id_counters (org_id, name, last_value) VALUES (@org, @sequence, 1)
            ON CONFLICT (org_id, name) DO UPDATE SET last_value = id_counters.last_value + 1
            RETURNING last_value
            """,
            new { org = OrgId, sequence });
    }

    /// <summary>Records an explicitly chosen id, so later generated ids never collide with it.</summary>
    public Task ClaimIdAsync(string sequence, long id) =>
        ExecuteAsync(
            """
            INSERT INTO id_counters (org_id, name, last_value) VALUES (@org, @sequence, @id)
            ON CONFLICT (org_id, name) DO UPDATE SET last_value = {greatest}(id_counters.last_value, @id)
            """,
            new { org = OrgId, sequence, id });
}

/// <summary>Bits of <c>events.line_kinds</c>: which kinds of ledger lines an event holds.</summary>
public static class EventLineKinds
{
    public const int Points = 1;
    public const int Currency = 2;
}

/// <summary>
/// What an event row says besides its entries. <see cref="CustomerId"/> is the customer whose action
/// the event records: the owner, for a customer's own events; for a group's pool, the member (or the
/// customer outside the group) who acted, or <see cref="NoCustomer"/> when no customer did (the pool's
/// expiry, a transfer out of the pool). The points-ledger read shows it as each entry's customerId and
/// filters a group's events by role on it. <see cref="ExternalReference"/> is stored with the event
/// (a reversal finds a redemption by it); <see cref="BillNumber"/>, <see cref="StoreCode"/> and
/// <see cref="TillCode"/> only go into its announcement (the row keeps the bill, store and till ids).
/// </summary>
public sealed record NewEvent(
    OwnerType OwnerType,
    long OwnerId,
    long CustomerId,
    string EventName,
    string? DisplayName = null,
    long? SourceProgramId = null,
    long? StoreId = null,
    long? TillId = null,
    long? BillId = null,
    string? DetailsJson = null,
    string? Reason = null,
    long? RelatedEventId = null,
    string? ExternalReference = null,
    string? BillNumber = null,
    string? StoreCode = null,
    string? TillCode = null,
    int LineKinds = 0,
    WalletKey? HistoryWallet = null)
{
    /// <summary>The customer id of an event no customer made: no customer has id 0.</summary>
    public const long NoCustomer = 0;

    /// <summary>The <see cref="EventLineKinds"/> of lines in the amounts given (null currency: plain points).</summary>
    public static int KindsOf<T>(IEnumerable<(T? Currency, Points Points)> lines) where T : class =>
        lines.Aggregate(0, (kinds, line) => kinds | (line.Currency is null ? EventLineKinds.Points : EventLineKinds.Currency));
}

/// <summary>Part of a credit that becomes one lot.</summary>
public readonly record struct LotPiece(Points Points, long? ExpiresAt);

public sealed record ConsumedLot(long LotId, Points Points, long? ExpiresAt);

public sealed record DebitResult(PostedEntry Entry, IReadOnlyList<ConsumedLot> Consumed);
