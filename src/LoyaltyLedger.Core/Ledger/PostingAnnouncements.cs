using System.Text.Json;
using LoyaltyLedger.Outbox;
using LoyaltyLedger.Storage;
using OutboxRows = LoyaltyLedger.Outbox.Outbox;

namespace LoyaltyLedger.Ledger;

/// <summary>
/// The outbox events of one <see cref="Posting"/>, collected as it writes (every event it inserts,
/// every line it adds) and written in its transaction before it commits: a
/// <c>ledger.event.posted</c> per event (and <c>points.expired</c>, <c>redemption.reversed</c>,
/// <c>return.posted</c>, <c>held_points.released</c> or <c>customer.registered</c> for those kinds
/// of event, with the same data), then a <c>balance.changed</c> per wallet whose balance moved.
/// </summary>
/// <remarks>
/// Collected here rather than written line by line because an event's announcement holds all its
/// lines and a wallet's holds its balance before and after the whole posting: what they say is only
/// known at the end. The rows are then made (their payloads written) and left for the end of the
/// transaction, where they take their positions (Outbox.AddAll).
/// </remarks>
internal sealed class PostingAnnouncements
{
    private sealed record AnnouncedLine(Wallet Wallet, EntryType Type, Points Points, Points BalanceAfter);

    private sealed class Announced(long eventId, NewEvent e)
    {
        public long EventId { get; } = eventId;
        public NewEvent Event { get; } = e;
        public List<AnnouncedLine> Lines { get; } = [];
        public long? RelatedEventId { get; set; } = e.RelatedEventId;
        public string? Reason { get; set; } = e.Reason;
    }

    private sealed class Moved(Wallet wallet, Points before)
    {
        public Wallet Wallet { get; } = wallet;
        public Points Before { get; } = before;
        public List<long> EventIds { get; } = [];
    }

    private readonly List<Announced> _events = [];
    private readonly Dictionary<long, Announced> _byId = [];
    private readonly List<Moved> _moved = [];
    private readonly Dictionary<WalletKey, Moved> _movedByKey = [];

    public bool IsEmpty => _events.Count == 0;

    public void Event(long eventId, NewEvent e)
    {
        var announced = new Announced(eventId, e);
        _events.Add(announced);
        _byId[eventId] = announced;
    }

    /// <summary>A line just added to <paramref name="wallet"/>, whose balance is already the balance after it.</summary>
    public void Line(long eventId, Wallet wallet, EntryType type, Points points)
    {
        if (!_byId.TryGetValue(eventId, out var announced))
            throw new InvalidOperationException($"Event {eventId} was not inserted by this posting, so its lines cannot be announced.");
        announced.Lines.Add(new AnnouncedLine(wallet, type, points, wallet.Balance));
        if (!_movedByKey.TryGetValue(wallet.Key, out var moved))
        {
            // The balance moves by exactly each line's points, so the first line says what it was.
            var before = type switch
            {
                EntryType.Credit => wallet.Balance - points,
                EntryType.Debit => wallet.Balance + points,
                _ => wallet.Balance,
            };
            moved = new Moved(wallet, before);
            _moved.Add(moved);
            _movedByKey[wallet.Key] = moved;
        }
        if (!moved.EventIds.Contains(eventId)) moved.EventIds.Add(eventId);
    }

    public void Related(long eventId, long relatedEventId)
    {
        if (_byId.TryGetValue(eventId, out var announced)) announced.RelatedEventId = relatedEventId;
    }

    public void Reason(long eventId, string? reason)
    {
        if (_byId.TryGetValue(eventId, out var announced)) announced.Reason = reason;
    }

    /// <summary>Adds the outbox rows of everything collected so far to <paramref name="batch"/>, and forgets it.</summary>
    public void AddTo(StatementBatch batch, long orgId, long nowMs)
    {
        var rows = new List<OutboxRows.NewRow>();
        foreach (var announced in _events)
        {
            rows.Add(new(OutboxEventTypes.LedgerEventPosted, w => WriteEvent(w, announced)));
            if (AlsoAnnouncedAs(announced.Event.EventName) is { } type)
                rows.Add(new(type, w => WriteEvent(w, announced)));
        }
        foreach (var moved in _moved.Where(m => m.Wallet.Balance != m.Before).OrderBy(m => m.Wallet.Key))
            rows.Add(new(OutboxEventTypes.BalanceChanged, w => WriteBalance(w, moved)));
        // In this order, which their positions keep.
        OutboxRows.AddAll(batch, orgId, nowMs, rows);
        _events.Clear();
        _byId.Clear();
        _moved.Clear();
        _movedByKey.Clear();
    }

    /// <summary>The type an event of this name is announced as besides <c>ledger.event.posted</c>.</summary>
    private static string? AlsoAnnouncedAs(string eventName) => eventName switch
    {
        EventNames.PointsExpiry => OutboxEventTypes.PointsExpired,
        EventNames.RedemptionReversal => OutboxEventTypes.RedemptionReversed,
        EventNames.ReturnBill => OutboxEventTypes.ReturnPosted,
        EventNames.DelayedAccrual => OutboxEventTypes.HeldPointsReleased,
        EventNames.CustomerRegistration => OutboxEventTypes.CustomerRegistered,
        _ => null,
    };

    private static void WriteEvent(Utf8JsonWriter w, Announced announced)
    {
        var e = announced.Event;
        w.WriteStartObject();
        w.WriteNumber("eventId", announced.EventId);
        w.WriteString("eventName", e.EventName);
        if (e.DisplayName is { } displayName) w.WriteString("displayName", displayName);
        w.WriteString("ownerType", e.OwnerType.ToWire());
        w.WriteNumber("ownerId", e.OwnerId);
        if (e.CustomerId != NewEvent.NoCustomer) w.WriteNumber("customerId", e.CustomerId);
        if (e.SourceProgramId is { } programId) w.WriteNumber("programId", programId);
        if (e.BillNumber is { } billNumber) w.WriteString("billNumber", billNumber);
        if (e.StoreCode is { } storeCode) w.WriteString("storeCode", storeCode);
        if (e.TillCode is { } tillCode) w.WriteString("tillCode", tillCode);
        if (e.ExternalReference is { } reference) w.WriteString("externalReference", reference);
        if (announced.RelatedEventId is { } related) w.WriteNumber("relatedEventId", related);
        if (announced.Reason is { } reason) w.WriteString("reason", reason);
        if (e.DetailsJson is { } details)
        {
            w.WritePropertyName("details");
            w.WriteRawValue(details);
        }
        w.WriteStartArray("lines");
        foreach (var line in announced.Lines)
        {
            w.WriteStartObject();
            WriteWallet(w, line.Wallet);
            w.WriteString("entryType", line.Type.ToWire());
            w.WriteString("points", line.Points.ToString());
            w.WriteString("balanceAfter", line.BalanceAfter.ToString());
            w.WriteEndObject();
        }
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteBalance(Utf8JsonWriter w, Moved moved)
    {
        w.WriteStartObject();
        w.WriteString("ownerType", moved.Wallet.Key.OwnerType.ToWire());
        w.WriteNumber("ownerId", moved.Wallet.Key.OwnerId);
        WriteWallet(w, moved.Wallet);
        w.WriteString("oldBalance", moved.Before.ToString());
        w.WriteString("newBalance", moved.Wallet.Balance.ToString());
        w.WriteStartArray("eventIds");
        foreach (var id in moved.EventIds) w.WriteNumberValue(id);
        w.WriteEndArray();
        w.WriteEndObject();
    }

    private static void WriteWallet(Utf8JsonWriter w, Wallet wallet)
    {
        w.WriteNumber("programId", wallet.Key.ProgramId);
        if (wallet.CurrencyName is { } currency) w.WriteString("currency", currency);
        w.WriteString("category", wallet.Key.Category.ToWire());
    }
}
