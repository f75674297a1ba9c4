using System.Collections.Concurrent;
using System.Runtime.ExceptionServices;
using LoyaltyLedger.Storage;

namespace LoyaltyLedger.Seeding;

/// <summary>
/// A bulk load that takes rows on the generator's thread and writes them into another load on
/// threads of its own, through bounded queues of row batches. The generator then never waits on
/// encoding, a socket or SQLite's b-trees, so on a 2-core machine generating and writing overlap.
/// </summary>
/// <remarks>
/// Tables are grouped in lanes; a lane is one queue and one writing thread, and writes its tables'
/// rows in the order they were produced. SQLite needs a single lane (one connection, one
/// transaction); PostgreSQL's COPY streams are independent connections, so a lane per table lets a
/// backend that is behind block only its own table. A batch is only recorded values, so the rows
/// reach the inner load exactly as they would have been written directly.
/// </remarks>
public sealed class PipelinedBulkLoad : BulkLoad
{
    /// <summary>Rows per batch: big enough that the hand-over costs nothing per row, small enough to keep a lane busy.</summary>
    private const int BatchRows = 1024;
    /// <summary>Batches a lane may hold ahead of its writer; the generator waits beyond that, so memory stays bounded.</summary>
    private const int LaneDepth = 32;

    private readonly BulkLoad _inner;
    private readonly Lane[] _lanes;
    private readonly CancellationTokenSource _failed = new();
    private Exception? _failure;
    private bool _completed;

    /// <param name="inner">The load that writes to the database; owned and disposed by this one.</param>
    /// <param name="tables">The tables, as given to the inner load.</param>
    /// <param name="lanePerTable">True for a writing thread per table, false for one writing thread for all.</param>
    public PipelinedBulkLoad(BulkLoad inner, IReadOnlyList<BulkTable> tables, bool lanePerTable)
    {
        _inner = inner;
        _lanes = Enumerable.Range(0, lanePerTable ? tables.Count : 1).Select(_ => new Lane()).ToArray();
        for (var i = 0; i < tables.Count; i++)
            Add(new RecordingRowWriter(tables[i], inner[tables[i].Name], _lanes[lanePerTable ? i : 0], this));
        foreach (var lane in _lanes)
            lane.Writer = Task.Factory.StartNew(() => Drain(lane), CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    public override async Task CompleteAsync(CancellationToken ct)
    {
        foreach (var writer in Writers.Cast<RecordingRowWriter>()) writer.Flush();
        foreach (var lane in _lanes) lane.Queue.CompleteAdding();
        await Task.WhenAll(_lanes.Select(l => l.Writer));
        if (_failure is not null) ExceptionDispatchInfo.Throw(_failure);
        await _inner.CompleteAsync(ct);
        _completed = true;
    }

    public override async ValueTask DisposeAsync()
    {
        if (!_completed)
        {
            // Abandoned (an error or a cancellation in the generator): the writers stop at their
            // next batch, and the inner load then discards everything it was given.
            await _failed.CancelAsync();
            foreach (var lane in _lanes) lane.Queue.CompleteAdding();
            await Task.WhenAll(_lanes.Select(l => l.Writer));
        }
        foreach (var lane in _lanes) lane.Queue.Dispose();
        _failed.Dispose();
        await _inner.DisposeAsync();
    }

    private void Drain(Lane lane)
    {
        try
        {
            foreach (var batch in lane.Queue.GetConsumingEnumerable())
            {
                if (_failed.IsCancellationRequested) return;
                batch.WriteTo();
                batch.Owner.Free.Enqueue(batch);
            }
        }
        catch (Exception e)
        {
            // The first failure wins; cancelling wakes the generator if it waits on a full queue,
            // and it then rethrows this exception rather than a cancellation.
            Interlocked.CompareExchange(ref _failure, e, null);
            _failed.Cancel();
        }
    }

    private void Enqueue(Lane lane, RowBatch batch)
    {
        try
        {
            lane.Queue.Add(batch, _failed.Token);
        }
        catch (OperationCanceledException) when (_failure is not null)
        {
            ExceptionDispatchInfo.Throw(_failure);
        }
    }

    private sealed class Lane
    {
        public readonly BlockingCollection<RowBatch> Queue = new(LaneDepth);
        public Task Writer = Task.CompletedTask;
    }

    private enum ValueKind : byte { Long, Null, Text }

    /// <summary>Rows of one table as the values the generator wrote, in order.</summary>
    private sealed class RowBatch(RecordingRowWriter owner, BulkRowWriter target)
    {
        public readonly RecordingRowWriter Owner = owner;
        public readonly long[] Longs = new long[BatchRows * target.Table.Columns.Count];
        public readonly string?[] Texts = new string?[BatchRows * target.Table.Columns.Count];
        public readonly ValueKind[] Kinds = new ValueKind[BatchRows * target.Table.Columns.Count];
        public int Values;
        public int Rows;

        public void WriteTo()
        {
            var columns = target.Table.Columns.Count;
            var v = 0;
            for (var r = 0; r < Rows; r++)
            {
                target.Start();
                for (var c = 0; c < columns; c++, v++)
                {
                    switch (Kinds[v])
                    {
                        case ValueKind.Long: target.Long(Longs[v]); break;
                        case ValueKind.Null: target.Long(null); break;
                        default: target.Text(Texts[v]); break;
                    }
                }
                target.End();
            }
            // Strings are released with the batch's use, not with its reuse.
            Array.Clear(Texts, 0, Values);
            Values = 0;
            Rows = 0;
        }
    }

    private sealed class RecordingRowWriter : BulkRowWriter
    {
        private readonly BulkRowWriter _target;
        private readonly Lane _lane;
        private readonly PipelinedBulkLoad _load;
        private RowBatch _batch;

        public RecordingRowWriter(BulkTable table, BulkRowWriter target, Lane lane, PipelinedBulkLoad load) : base(table)
        {
            (_target, _lane, _load) = (target, lane, load);
            _batch = new RowBatch(this, target);
        }

        /// <summary>Written batches, handed back for reuse so a long load does not churn the garbage collector.</summary>
        public ConcurrentQueue<RowBatch> Free { get; } = new();

        public override void Start() { }

        public override void Long(long value)
        {
            _batch.Kinds[_batch.Values] = ValueKind.Long;
            _batch.Longs[_batch.Values++] = value;
        }

        public override void Long(long? value)
        {
            if (value is { } v) Long(v);
            else _batch.Kinds[_batch.Values++] = ValueKind.Null;
        }

        public override void Text(string? value)
        {
            _batch.Kinds[_batch.Values] = ValueKind.Text;
            _batch.Texts[_batch.Values++] = value;
        }

        public override void End()
        {
            base.End();
            _batch.Rows++;
            if (_batch.Rows == BatchRows) Flush();
        }

        /// <summary>Hands the batch to the lane's writer and takes an empty one.</summary>
        public void Flush()
        {
            if (_batch.Rows == 0) return;
            _load.Enqueue(_lane, _batch);
            _batch = Free.TryDequeue(out var free) ? free : new RowBatch(this, _target);
        }
    }
}
