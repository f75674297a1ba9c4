using System.Globalization;
using System.Text.Json;
using LoyaltyLedger.PointsLedger;

namespace LoyaltyLedger.Tests;

/// <summary>Fixed-point points: exact parsing, printing and arithmetic.</summary>
public class PointsTests
{
    [Theory]
    [InlineData("100", 100_000)]
    [InlineData("0.1", 100)]
    [InlineData("12.345", 12_345)]
    [InlineData("-20.5", -20_500)]
    [InlineData("1.2300", 1_230)]
    public void decimal_text_with_up_to_three_decimals_parses_exactly(string text, long thousandths) =>
        Points.Parse(text).Thousandths.ShouldBe(thousandths);

    [Theory]
    [InlineData("1.0001")]
    [InlineData("abc")]
    [InlineData("")]
    [InlineData("1e3")]
    public void anything_else_is_refused_rather_than_rounded(string text) =>
        Points.TryParse(text, out _, out _).ShouldBeFalse();

    [Theory]
    [InlineData(100_000, "100.000")]
    [InlineData(1, "0.001")]
    [InlineData(-20_500, "-20.500")]
    [InlineData(0, "0.000")]
    public void points_print_with_three_decimals(long thousandths, string text) =>
        new Points(thousandths).ToString().ShouldBe(text);

    [Fact]
    public void a_tenth_added_ten_times_is_exactly_one()
    {
        var sum = Points.Zero;
        for (var i = 0; i < 10; i++) sum += Points.Parse("0.1");
        sum.ShouldBe(Points.FromWhole(1));
    }

    [Fact]
    public void overflow_is_an_error_not_a_wrap() =>
        Should.Throw<OverflowException>(() => new Points(long.MaxValue) + new Points(1));

    /// <summary>
    /// Points, money and ledger dates are printed with integer arithmetic; the decimal formatting they
    /// replaced is the reference, for the edges and for a hundred thousand values at random.
    /// </summary>
    [Fact]
    public void amounts_and_dates_print_as_decimal_formatting_prints_them()
    {
        var random = new Random(20261201);
        long[] edges = [0, 1, -1, 9, 10, 99, 100, 999, 1000, 1001, -1000, 10_500, -10_050, 200_000, long.MaxValue, long.MinValue, long.MinValue + 1];
        var values = edges.Concat(Enumerable.Range(0, 100_000).Select(i => i % 2 == 0 ? random.NextInt64(-10_000_000, 10_000_000) : random.NextInt64(long.MinValue, long.MaxValue)));
        foreach (var thousandths in values)
        {
            var magnitude = Math.Abs((decimal)thousandths) / 1000m;
            new Points(thousandths).ToString().ShouldBe((thousandths < 0 ? "-" : "") + magnitude.ToString("0.000", CultureInfo.InvariantCulture));
            JsonSerializer.Serialize(new TransactionDetails(Amount: thousandths), LedgerJson.Options)
                .ShouldBe($"{{\"amount\":{((decimal)thousandths / 1000m).ToString("0.0##", CultureInfo.InvariantCulture)}}}");
        }

        long[] instants = [0, 1, 10, 100, 120, 999, 1000, -1, -1000, 1_714_806_994_000, 1_714_806_994_500, 1_714_806_994_050, 1_714_806_994_005, 253_402_300_799_999, -62_135_596_800_000];
        foreach (var ms in instants.Concat(Enumerable.Range(0, 100_000).Select(_ => random.NextInt64(-62_135_596_800_000, 253_402_300_799_999))))
        {
            var at = DateTimeOffset.FromUnixTimeMilliseconds(ms).UtcDateTime;
            LedgerJson.FormatDate(ms).ShouldBe(at.ToString("yyyy-MM-dd HH:mm:ss", CultureInfo.InvariantCulture)
                + (at.Millisecond / 1000m).ToString("0.0##", CultureInfo.InvariantCulture)[1..]);
        }
    }
}
