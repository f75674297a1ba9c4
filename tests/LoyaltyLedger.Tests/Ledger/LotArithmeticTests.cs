using LoyaltyLedger.Ledger;

namespace LoyaltyLedger.Tests.Ledger;

/// <summary>The posting rules for lots, on values: what a debit takes, in which order (no database).</summary>
public sealed class LotArithmeticTests
{
    private static OpenLot Lot(long id, long remaining, long? expiresAt) => new(id, new Points(remaining), expiresAt);

    [Fact]
    public void a_debit_takes_the_earliest_expiry_first_lots_that_never_expire_last_and_the_older_of_one_date_first()
    {
        OpenLot[] lots = [Lot(1, 10, null), Lot(2, 10, 300), Lot(3, 10, 100), Lot(4, 10, 300), Lot(5, 10, null), Lot(6, 10, 200)];

        lots.Order(LotArithmetic.DebitOrder).Select(l => l.LotId).ShouldBe([3L, 6, 2, 4, 1, 5]);
    }

    [Fact]
    public void a_debit_takes_whole_lots_in_the_order_given_and_part_of_the_last_one()
    {
        var (taken, shortfall) = LotArithmetic.Take([Lot(3, 4_000, 100), Lot(6, 5_000, 200), Lot(2, 7_000, 300)], new Points(10_500));

        taken.ShouldBe([new ConsumedLot(3, new Points(4_000), 100), new ConsumedLot(6, new Points(5_000), 200), new ConsumedLot(2, new Points(1_500), 300)]);
        shortfall.ShouldBe(Points.Zero);
    }

    [Fact]
    public void what_no_lot_covers_is_the_shortfall_and_an_empty_lot_gives_nothing()
    {
        var (taken, shortfall) = LotArithmetic.Take([Lot(1, 0, 100), Lot(2, 2_500, null)], new Points(4_000));

        taken.ShouldBe([new ConsumedLot(2, new Points(2_500), null)]);
        shortfall.ShouldBe(new Points(1_500));
    }

    [Fact]
    public void a_debit_stops_reading_lots_once_it_is_covered()
    {
        var read = 0;
        IEnumerable<OpenLot> Lots()
        {
            for (var id = 1; ; id++)
            {
                read++;
                yield return Lot(id, 1_000, id);
            }
        }

        LotArithmetic.Take(Lots(), new Points(2_500)).Taken.Count.ShouldBe(3);
        read.ShouldBe(3);
    }

    [Fact]
    public void a_debit_of_nothing_is_refused()
    {
        Should.Throw<ArgumentOutOfRangeException>(() => LotArithmetic.Take([Lot(1, 1_000, null)], Points.Zero));
    }

    [Fact]
    public void over_random_wallets_a_debit_takes_exactly_its_points_never_more_than_a_lot_holds_and_each_lot_only_after_the_earlier_ones_are_empty()
    {
        var random = new Random(16);
        for (var round = 0; round < 2_000; round++)
        {
            var lots = Enumerable.Range(1, random.Next(0, 8))
                .Select(id => Lot(id, random.Next(0, 4) * 1_000 + random.Next(0, 3) * 7, random.Next(3) == 0 ? null : random.Next(1, 4)))
                .Order(LotArithmetic.DebitOrder).ToList();
            var points = new Points(random.Next(1, 12_000));

            var (taken, shortfall) = LotArithmetic.Take(lots, points);

            (taken.Aggregate(Points.Zero, (sum, t) => sum + t.Points) + shortfall).ShouldBe(points);
            var held = lots.Aggregate(Points.Zero, (sum, l) => sum + l.Remaining);
            shortfall.ShouldBe(Points.Max(Points.Zero, points - held));
            foreach (var t in taken)
            {
                var lot = lots.Single(l => l.LotId == t.LotId);
                t.Points.IsPositive.ShouldBeTrue();
                t.Points.ShouldBeLessThanOrEqualTo(lot.Remaining);
                t.ExpiresAt.ShouldBe(lot.ExpiresAt);
            }
            // Every lot before the last one taken from is emptied.
            if (taken.Count == 0) continue;
            var last = lots.FindIndex(l => l.LotId == taken[^1].LotId);
            foreach (var earlier in lots.Take(last).Where(l => l.Remaining.IsPositive))
                taken.Single(t => t.LotId == earlier.LotId).Points.ShouldBe(earlier.Remaining);
        }
    }
}
