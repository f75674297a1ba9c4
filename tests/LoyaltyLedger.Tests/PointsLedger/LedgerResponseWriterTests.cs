using System.Buffers;
using System.Text;
using System.Text.Json;
using LoyaltyLedger.PointsLedger;

namespace LoyaltyLedger.Tests.PointsLedger;

/// <summary>
/// The points-ledger page's hand-kept JSON writer writes what the serializer writes with the API's
/// settings, byte for byte: the serializer is the reference, for pages generated at random (nulls,
/// empty lists, text that must be escaped, a null where the record says there is none, the edges of
/// points and dates).
/// </summary>
public sealed class LedgerResponseWriterTests
{
    private const int Pages = 3_000;

    [Fact]
    public void a_points_ledger_page_is_written_as_the_serializer_writes_it()
    {
        var random = new Random(20261203);
        for (var i = 0; i < Pages; i++)
        {
            var page = LedgerPage(random);
            var written = Written(w => LedgerResponseWriter.Write(w, page), LedgerJson.Options);
            written.ShouldBe(JsonSerializer.Serialize(page, LedgerJson.Options), $"page {i}");
        }
    }

    [Fact]
    public void a_page_with_every_field_set_names_every_field()
    {
        // The generated pages leave fields out at random; this one checks that each field the
        // serializer writes is there, by name, when it has a value.
        var full = new LedgerResponse(
            new SubjectDetails("Ann", "Lee", 7, "X-7", "CUSTOMER"), new PageDetails(2, 10, 31, 4),
            [new LedgerEvent(1, "TransactionAdd", 7, 1_714_806_994_500, new EntryCustomer(8, "Bo", "Lee", "X-8", "MEMBER"),
                [new EntryDetail("CREDIT", new Points(12_500), "Main", "Points", 1, "Stars")], new Points(12_500),
                new TransactionDetails(3, "B-3", 1_714_806_994_000, 125_000, 130_500, "INSTORE"), "Store", "S001", "T01",
                new Dictionary<string, string> { ["channel"] = "pos" }, 1, "Points")],
            [new LedgerClosingBalance(1, "Points", "Main", "Stars", new Points(-1), 1_714_806_994_005)], [new LedgerWarning("w")]);

        var written = Written(w => LedgerResponseWriter.Write(w, full), LedgerJson.Options);

        written.ShouldBe(JsonSerializer.Serialize(full, LedgerJson.Options));
        foreach (var name in new[] { "firstName", "externalId", "role", "alternateCurrencyName", "transactionId", "grossBillAmount", "sourceProgramName", "ledgerClosingBalance", "closingBalance", "message" })
            written.ShouldContain($"\"{name}\":");
    }

    private static string Written(Action<Utf8JsonWriter> write, JsonSerializerOptions options)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = options.Encoder }))
            write(writer);
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>Plain words most of the time; sometimes text the encoder must escape or may pass through.</summary>
    private static readonly string[] Texts =
        ["Main", "Points Program", "", "Tier-points", "'abc'", "a \"quoted\" word", "back\\slash", "line\nbreak", "tab\t", "<b>&amp;</b>",
         "caf\u00e9", "\u00fcber", "\u65e5\u672c", "emoji \ud83c\udf81", "nul\u0001control", "+plus", "\u2028separator"];

    private static string Text(Random r) => r.Next(3) == 0 ? Texts[r.Next(Texts.Length)] : "w" + r.Next(1000);

    private static string? Maybe(Random r) => r.Next(3) == 0 ? null : Text(r);

    private static readonly long[] Longs = [0, 1, -1, 999, 1000, 1001, -10_050, long.MaxValue, long.MinValue, long.MinValue + 1];

    private static long Long(Random r) => r.Next(3) == 0 ? Longs[r.Next(Longs.Length)] : r.NextInt64(-10_000_000, 10_000_000);

    private static long Instant(Random r) => r.Next(4) == 0
        ? (r.Next(2) == 0 ? -62_135_596_800_000 : 253_402_300_799_999)
        : r.NextInt64(-62_135_596_800_000, 253_402_300_799_999);

    private static IReadOnlyList<T> ListOf<T>(Random r, Func<Random, T> item, int max = 3) => [.. Enumerable.Range(0, r.Next(0, max + 1)).Select(_ => item(r))];

    /// <summary>A string the record declares non-nullable, null now and then: the serializer leaves it out, and so must the writer.</summary>
    private static string Loose(Random r) => r.Next(10) == 0 ? null! : Text(r);

    /// <summary>A Dictionary or another IReadOnlyDictionary (the writer walks the two apart), a value null now and then.</summary>
    private static IReadOnlyDictionary<string, string> Details(Random r)
    {
        var details = Enumerable.Range(0, r.Next(0, 3)).Select(i => (Key: Text(r) + i, Value: r.Next(8) == 0 ? null! : Text(r)))
            .ToDictionary(p => p.Key, p => p.Value);
        return r.Next(2) == 0 ? details : new System.Collections.ObjectModel.ReadOnlyDictionary<string, string>(details);
    }

    private static LedgerResponse LedgerPage(Random r) => new(
        new SubjectDetails(Maybe(r), Maybe(r), Long(r), Maybe(r), Loose(r)),
        new PageDetails(r.Next(), r.Next(), Long(r), Long(r)),
        ListOf(r, Event),
        r.Next(3) == 0 ? null : ListOf(r, rr => new LedgerClosingBalance(Long(rr), Text(rr), Text(rr), Maybe(rr), new Points(Long(rr)), Instant(rr))),
        ListOf(r, rr => new LedgerWarning(Loose(rr)), 2));

    private static LedgerEvent Event(Random r) => new(
        Long(r), Loose(r), Long(r), Instant(r),
        r.Next(3) == 0 ? new EntryCustomer(Long(r), Maybe(r), Maybe(r), Maybe(r), Maybe(r)) : null,
        ListOf(r, rr => new EntryDetail(Loose(rr), new Points(Long(rr)), Loose(rr), Loose(rr), Long(rr), Maybe(rr))),
        new Points(Long(r)),
        r.Next(3) == 0 ? TransactionDetails.None
            : new TransactionDetails(r.Next(2) == 0 ? Long(r) : null, Maybe(r), r.Next(2) == 0 ? Instant(r) : null,
                r.Next(2) == 0 ? Long(r) : null, r.Next(2) == 0 ? Long(r) : null, Maybe(r)),
        Loose(r), Loose(r), Loose(r), Details(r),
        r.Next(2) == 0 ? Long(r) : null, Maybe(r));
}
