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
}
