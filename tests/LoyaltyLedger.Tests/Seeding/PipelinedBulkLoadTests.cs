using LoyaltyLedger.Seeding;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Tests.Seeding;

/// <summary>
/// The pipeline's hand-over between the generator and the writing threads, over a load that keeps
/// the values it is given in memory; the databases' side is proven by <see cref="SeedTests"/>.
/// </summary>
public sealed class PipelinedBulkLoadTests
{
    private static readonly BulkTable Narrow = new("narrow", [("a", BulkType.Bigint), ("b", BulkType.Text)]);
    private static readonly BulkTable Wide = new("wide", [("x", BulkType.Bigint), ("y", BulkType.Bigint), ("z", BulkType.Smallint)]);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task every_value_reaches_its_table_in_the_order_it_was_written(bool lanePerTable)
    {
        var inner = new MemoryLoad([Narrow, Wide]);
        await using (var load = new PipelinedBulkLoad(inner, [Narrow, Wide], lanePerTable))
        {
            // Not a multiple of a batch, so the last partial batches must be flushed on completion.
            for (var i = 0L; i < 5_000; i++)
            {
                var narrow = load[Narrow.Name];
                narrow.Start(); narrow.Long(i); narrow.Text(i % 7 == 0 ? null : "n" + i); narrow.End();
                if (i % 3 != 0) continue;
                var wide = load[Wide.Name];
                wide.Start(); wide.Long(i); wide.Long(i % 2 == 0 ? null : i * 2); wide.Long(1); wide.End();
            }
            await load.CompleteAsync(CancellationToken.None);
            load.TotalRows.ShouldBe(5_000 + 1_667);
        }

        inner.Completed.ShouldBeTrue();
        inner.Disposed.ShouldBeTrue();
        var expectedNarrow = Enumerable.Range(0, 5_000).Select(i => $"start {i} {(i % 7 == 0 ? "null" : "n" + i)} end");
        inner.Log(Narrow).ShouldBe(expectedNarrow);
        var expectedWide = Enumerable.Range(0, 5_000).Where(i => i % 3 == 0).Select(i => $"start {i} {(i % 2 == 0 ? "null" : (i * 2).ToString())} 1 end");
        inner.Log(Wide).ShouldBe(expectedWide);
    }

    [Fact]
    public async Task a_writer_that_fails_stops_the_generator_with_its_error_instead_of_hanging()
    {
        var inner = new MemoryLoad([Narrow]) { FailAfterRows = 3_000 };
        var load = new PipelinedBulkLoad(inner, [Narrow], lanePerTable: false);
        var error = await Should.ThrowAsync<InvalidOperationException>(async () =>
        {
            // Far more rows than the queue holds: the generator would block for ever on a dead writer.
            for (var i = 0L; i < 10_000_000; i++)
            {
                var row = load[Narrow.Name];
                row.Start(); row.Long(i); row.Text("x"); row.End();
            }
            await load.CompleteAsync(CancellationToken.None);
        });
        error.Message.ShouldBe("row 3000 refused");
        await load.DisposeAsync();
        inner.Completed.ShouldBeFalse();
        inner.Disposed.ShouldBeTrue();
    }

    [Fact]
    public async Task an_abandoned_load_is_discarded_without_completing()
    {
        var inner = new MemoryLoad([Narrow]);
        await using (var load = new PipelinedBulkLoad(inner, [Narrow], lanePerTable: true))
        {
            var row = load[Narrow.Name];
            for (var i = 0L; i < 10_000; i++) { row.Start(); row.Long(i); row.Text("x"); row.End(); }
        }
        inner.Completed.ShouldBeFalse();
        inner.Disposed.ShouldBeTrue();
    }

    /// <summary>A load that writes each row as a line of text, per table.</summary>
    private sealed class MemoryLoad : BulkLoad
    {
        public MemoryLoad(IEnumerable<BulkTable> tables)
        {
            foreach (var table in tables) Add(new MemoryRowWriter(table, this));
        }

        public long FailAfterRows { get; init; } = long.MaxValue;
        public bool Completed { get; private set; }
        public bool Disposed { get; private set; }

        public List<string> Log(BulkTable table) => ((MemoryRowWriter)this[table.Name]).Lines;

        public override Task CompleteAsync(CancellationToken ct)
        {
            Completed = true;
            return Task.CompletedTask;
        }

        public override ValueTask DisposeAsync()
        {
            Disposed = true;
            return ValueTask.CompletedTask;
        }

        private sealed class MemoryRowWriter(BulkTable table, MemoryLoad load) : BulkRowWriter(table)
        {
            private string _line = "";

            public List<string> Lines { get; } = [];

            public override void Start() => _line = "start";
            public override void Long(long value) => _line += " " + value;
            public override void Long(long? value) => _line += " " + (value?.ToString() ?? "null");
            public override void Text(string? value) => _line += " " + (value ?? "null");

            public override void End()
            {
                if (Rows == load.FailAfterRows) throw new InvalidOperationException($"row {Rows} refused");
                Lines.Add(_line + " end");
                base.End();
            }
        }
    }
}
