using System.Text.Json;

namespace LoyaltyLedger.FaultTest;

public enum OperationKind { EarnBill, EarnEvent, Redeem, Transfer, Return }

/// <summary>
/// How an operation ended. Every operation must end acknowledged or refused: an unresolved one
/// could have committed without the client knowing, and an anomaly is an answer the test never expects.
/// </summary>
public enum Outcome { Pending, Acknowledged, Refused, Anomaly, Unresolved }

/// <summary>A points movement of one customer's wallet, as an acknowledged response reported it.</summary>
public readonly record struct Movement(long CustomerId, long Thousandths);

/// <summary>
/// One business operation: a single request body under a single Idempotency-Key, sent as often as
/// it takes to get a definitive answer.
/// </summary>
public sealed class Operation(OperationKind kind, string key, string path, object body)
{
    public OperationKind Kind { get; } = kind;
    public string Key { get; } = key;
    public string Path { get; } = path;
    /// <summary>Serialized once, so every retry sends the very same bytes.</summary>
    public string Body { get; } = JsonSerializer.Serialize(body, JsonSerializerOptions.Web);

    public Outcome Outcome { get; set; } = Outcome.Pending;
    public int Attempts { get; set; }
    public int Status { get; set; }
    public string? ErrorCode { get; set; }
    public bool Replayed { get; set; }
    public string? ResponseBody { get; set; }
    public List<long> EventIds { get; } = [];
    public List<Movement> Movements { get; } = [];

    /// <summary>For a bill, what a later return needs; for a return, the amount asked.</summary>
    public string? BillNumber { get; init; }
    public decimal Amount { get; init; }

    /// <summary>Reads the event ids and the customers' movements out of a 2xx body.</summary>
    public void Acknowledge(int status, string body, bool replayed)
    {
        Outcome = Outcome.Acknowledged;
        Status = status;
        Replayed = replayed;
        ResponseBody = body;
        using var json = JsonDocument.Parse(body);
        var root = json.RootElement;
        foreach (var name in new[] { "eventId", "debitEventId", "creditEventId" })
        {
            if (root.TryGetProperty(name, out var id)) EventIds.Add(id.GetInt64());
        }
        foreach (var entry in root.GetProperty("entries").EnumerateArray())
        {
            if (entry.GetProperty("ownerType").GetString() != "CUSTOMER") continue;
            var points = Points.Parse(entry.GetProperty("points").GetString()!).Thousandths;
            var sign = entry.GetProperty("entryType").GetString() == "DEBIT" ? -1 : 1;
            Movements.Add(new Movement(entry.GetProperty("ownerId").GetInt64(), sign * points));
        }
    }
}
