using System.Globalization;
using System.Text;
using System.Text.Json;
using CsvHelper;
using Dapper;
using LoyaltyLedger.Exports;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Tests.Exports;

/// <summary>
/// Reads exports back the way their users would (CSV with the CSV library, NDJSON a line at a time
/// with a JSON parser), and reads the same lines straight from the ledger tables for comparison.
/// Every line becomes the export's columns as text: empty for a null, numbers as written.
/// </summary>
public static class ExportFiles
{
    /// <summary>The header and the records of a CSV export, parsed as RFC 4180 (a record of the wrong width fails).</summary>
    public static (string[] Header, List<string[]> Rows) ParseCsv(byte[] csv)
    {
        using var reader = CsvReader.Create(csv, CsvReaderOptions.Default with
        {
            Separator = ',',
            FieldCountMismatch = CsvFieldCountHandling.Throw,
        });
        var rows = new List<string[]>();
        while (reader.Read())
        {
            var row = new string[reader.FieldCount];
            for (var i = 0; i < row.Length; i++) row[i] = reader.GetString(i) ?? "";
            rows.Add(row);
        }
        return ([.. reader.Headers], rows);
    }

    /// <summary>Each line of an NDJSON export as its columns, in order; fails on a line that is not one JSON object with exactly the columns.</summary>
    public static List<string[]> ParseNdjson(string ndjson)
    {
        var rows = new List<string[]>();
        if (ndjson.Length == 0) return rows;
        ndjson.ShouldEndWith("\n");
        foreach (var line in ndjson[..^1].Split('\n'))
        {
            using var document = JsonDocument.Parse(line);
            var root = document.RootElement;
            root.ValueKind.ShouldBe(JsonValueKind.Object, line);
            root.EnumerateObject().Select(p => p.Name).ShouldBe(LedgerExport.Columns, line);
            rows.Add([.. root.EnumerateObject().Select(p => p.Value.ValueKind switch
            {
                JsonValueKind.Null => "",
                JsonValueKind.String => p.Value.GetString()!,
                JsonValueKind.Number => p.Value.GetRawText(),
                _ => throw new Xunit.Sdk.XunitException($"{p.Name} is {p.Value.ValueKind} in {line}"),
            })]);
        }
        return rows;
    }

    /// <summary>
    /// The organization's ledger lines straight from the tables (joins, not the export's
    /// subqueries), ordered here by time, event and line, as the export's columns: the points of a
    /// DEBIT negative, a formula-like text cell as CSV writes it when <paramref name="asCsv"/>.
    /// </summary>
    public static async Task<List<string[]>> LedgerLinesAsync(LedgerDatabase db, long orgId, bool asCsv)
    {
        var rows = await db.ReadAsync(c => c.QueryAsync<LineRow>(
            """
            SELECT le.event_id, le.entry_id, e.created_at, e.event_name, e.display_name, le.owner_type, le.owner_id, le.program_id,
                cur.name AS currency, le.category, le.entry_type, le.points, le.balance_after, b.bill_number,
                s.code AS store_code, t.code AS till_code, e.reason, e.related_event_id, le.tier
            FROM ledger_entries le
            JOIN events e ON e.event_id = le.event_id
            LEFT JOIN currencies cur ON cur.org_id = le.org_id AND cur.currency_id = le.currency_id
            LEFT JOIN bills b ON b.bill_id = e.bill_id
            LEFT JOIN stores s ON s.org_id = e.org_id AND s.store_id = e.store_id
            LEFT JOIN tills t ON t.org_id = e.org_id AND t.till_id = e.till_id
            WHERE le.org_id = @orgId
            """, new { orgId }), CancellationToken.None);
        string Text(string? value) => value is null ? "" : asCsv && value.Length > 0 && "=+-@\t\r".Contains(value[0], StringComparison.Ordinal) ? "'" + value : value;
        string Number(long value) => value.ToString(CultureInfo.InvariantCulture);
        return rows.OrderBy(r => r.CreatedAt).ThenBy(r => r.EventId).ThenBy(r => r.EntryId).Select(r => new[]
        {
            Number(r.EventId), Number(r.EntryId), IsoTime.Format(r.CreatedAt), Text(r.EventName), Text(r.DisplayName), r.OwnerType, Number(r.OwnerId),
            Number(r.ProgramId), Text(r.Currency), r.Category, r.EntryType,
            new Points(r.EntryType == "DEBIT" ? -r.Points : r.Points).ToString(), new Points(r.BalanceAfter).ToString(),
            Text(r.BillNumber), Text(r.StoreCode), Text(r.TillCode), Text(r.Reason), r.RelatedEventId is { } related ? Number(related) : "", Text(r.Tier),
        }).ToList();
    }

    /// <summary>One line per row, columns joined by |, for readable failures.</summary>
    public static List<string> Show(IEnumerable<string[]> rows) => [.. rows.Select(r => string.Join('|', r))];

    public static string Utf8(byte[] bytes) => Encoding.UTF8.GetString(bytes);

    private sealed class LineRow
    {
        public long EventId { get; set; }
        public long EntryId { get; set; }
        public long CreatedAt { get; set; }
        public string EventName { get; set; } = "";
        public string? DisplayName { get; set; }
        public string OwnerType { get; set; } = "";
        public long OwnerId { get; set; }
        public long ProgramId { get; set; }
        public string? Currency { get; set; }
        public string Category { get; set; } = "";
        public string EntryType { get; set; } = "";
        public long Points { get; set; }
        public long BalanceAfter { get; set; }
        public string? BillNumber { get; set; }
        public string? StoreCode { get; set; }
        public string? TillCode { get; set; }
        public string? Reason { get; set; }
        public long? RelatedEventId { get; set; }
        public string? Tier { get; set; }
    }
}
