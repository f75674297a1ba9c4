using System.Collections.Concurrent;

namespace LoyaltyLedger.FaultTest;

/// <summary>The program, store, till and customers the load runs against.</summary>
public sealed record Shop(long OrgId, long ProgramId, string StoreCode, string TillCode, IReadOnlyList<long> Customers);

/// <summary>
/// The concurrent clients: each runs operations one after another (earn by bill or by event,
/// redeem, transfer, return one of its own earlier bills) until the load ends, and finishes the
/// operation it is in, retrying, however long the faults make that take (up to the settle limit).
/// </summary>
public sealed class Workload(Shop shop, RetryingClient client, string runId)
{
    public ConcurrentQueue<Operation> Operations { get; } = new();

    public Task RunAsync(int clients, CancellationToken loadEnd, CancellationToken giveUp) =>
        Task.WhenAll(Enumerable.Range(0, clients).Select(i => Task.Run(() => ClientAsync(i, loadEnd, giveUp), CancellationToken.None)));

    private async Task ClientAsync(int index, CancellationToken loadEnd, CancellationToken giveUp)
    {
        var random = new Random(index * 7919 + 17);
        // This client's acknowledged bills and how much of each it has returned: a return only ever
        // names a bill its client saw acknowledged.
        var bills = new List<(string Number, decimal Amount, decimal Returned)>();
        for (var seq = 0; !loadEnd.IsCancellationRequested; seq++)
        {
            var key = $"ft-{runId}-c{index}-{seq}";
            var op = Next(random, key, bills);
            Operations.Enqueue(op);
            await client.RunAsync(op, index + seq, giveUp);
            if (op.Outcome == Outcome.Acknowledged && op.Kind == OperationKind.EarnBill)
                bills.Add((op.BillNumber!, op.Amount, 0m));
            if (op.Outcome == Outcome.Acknowledged && op.Kind == OperationKind.Return)
            {
                var i = bills.FindIndex(b => b.Number == op.BillNumber);
                bills[i] = bills[i] with { Returned = bills[i].Returned + op.Amount };
            }
        }
    }

    private Operation Next(Random random, string key, List<(string Number, decimal Amount, decimal Returned)> bills)
    {
        var customer = Pick(random);
        var roll = random.Next(100);
        var open = bills.Where(b => b.Returned < b.Amount).ToList();
        if (roll < 10 && open.Count > 0)
        {
            var bill = open[random.Next(open.Count)];
            var left = bill.Amount - bill.Returned;
            // Now and then more than is left, which the ledger must refuse (return_exceeds_bill).
            var amount = random.Next(6) == 0 ? left + 1m : Math.Max(0.01m, Math.Round(left * random.Next(20, 101) / 100m, 2));
            return new Operation(OperationKind.Return, key, "/v1/returns",
                new { storeCode = shop.StoreCode, billNumber = bill.Number, amount }) { BillNumber = bill.Number, Amount = amount };
        }
        if (roll < 45)
        {
            var amount = random.Next(500, 25_001) / 100m;
            var number = key["ft-".Length..];
            return new Operation(OperationKind.EarnBill, key, "/v1/transactions",
                new { customerId = customer, billNumber = number, amount, storeCode = shop.StoreCode, tillCode = shop.TillCode, programId = shop.ProgramId })
            { BillNumber = number, Amount = amount };
        }
        if (roll < 55)
        {
            return new Operation(OperationKind.EarnEvent, key, "/v1/events",
                new { customerId = customer, eventName = "FaultTestBonus", programId = shop.ProgramId, awards = new[] { new { points = random.Next(1, 51).ToString() } } });
        }
        if (roll < 80)
        {
            return new Operation(OperationKind.Redeem, key, "/v1/redemptions",
                new { customerId = customer, points = random.Next(1, 81).ToString(), programId = shop.ProgramId });
        }
        var to = Pick(random);
        while (to == customer) to = Pick(random);
        return new Operation(OperationKind.Transfer, key, "/v1/transfers",
            new { from = new { customerId = customer }, to = new { customerId = to }, points = random.Next(1, 51).ToString(), programId = shop.ProgramId });
    }

    private long Pick(Random random) => shop.Customers[random.Next(shop.Customers.Count)];
}
