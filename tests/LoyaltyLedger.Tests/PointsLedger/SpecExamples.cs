namespace LoyaltyLedger.Tests.PointsLedger;

/// <summary>The two example responses of the points-ledger spec, verbatim.</summary>
public static class SpecExamples
{
    /// <summary>The first example: a customer's ledger with points and alternate currencies.</summary>
    public const string CustomerLedger = """
        {
            "customerDetails": {
                "firstName": "naresh",
                "lastName": "silla",
                "userId": 64035151,
                "entityType": "CUSTOMER"
            },
            "ledgerDetails": {
                "pageNumber": 0,
                "pageSize": 10,
                "totalEntries": 34,
                "pageCount": 4
            },
            "ledgerEntries": [
                {
                    "eventLogId": 183281908,
                    "eventName": "GenericEvent",
                    "customerId": 64035151,
                    "ledgerCreatedDate": "2024-05-04 07:16:34.0",
                    "customerDetails": null,
                    "entryDetails": [
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "100.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Tier-points"
                        }
                    ],
                    "netPointsOnEvent": "100.000",
                    "transactionDetails": {},
                    "store": "default",
                    "storeCode": "default",
                    "tillCode": "default",
                    "eventDetails": {
                        "eventDisplayName": "ThankYouSanta",
                        "displayName": "ThankYouSanta"
                    },
                    "sourceProgramId": 817,
                    "sourceProgramName": "David Jones- Card Program"
                },
                {
                    "eventLogId": 183267939,
                    "eventName": "GenericEvent",
                    "customerId": 64035151,
                    "ledgerCreatedDate": "2024-05-04 06:35:44.0",
                    "customerDetails": null,
                    "entryDetails": [
                        {
                            "ledgerEntryType": "OPENING_BALANCE",
                            "points": "0.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Pebbles"
                        },
                        {
                            "ledgerEntryType": "OPENING_BALANCE",
                            "points": "0.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Boost"
                        },
                        {
                            "ledgerEntryType": "OPENING_BALANCE",
                            "points": "0.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Tier-points"
                        },
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "100.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Tier-points"
                        }
                    ],
                    "netPointsOnEvent": "100.000",
                    "transactionDetails": {},
                    "store": "default",
                    "storeCode": "default",
                    "tillCode": "default",
                    "eventDetails": {
                        "eventDisplayName": "ThankYouSanta",
                        "displayName": "ThankYouSanta"
                    },
                    "sourceProgramId": 817,
                    "sourceProgramName": "David Jones- Card Program"
                },
                {
                    "eventLogId": 178283044,
                    "eventName": "BulkAllocatePoints",
                    "customerId": 626,
                    "ledgerCreatedDate": "2024-04-19 07:39:11.0",
                    "customerDetails": null,
                    "entryDetails": [
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "2000.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626
                        }
                    ],
                    "netPointsOnEvent": "2000.000",
                    "transactionDetails": {},
                    "store": "default",
                    "storeCode": "default",
                    "tillCode": "default",
                    "eventDetails": {},
                    "sourceProgramId": 626,
                    "sourceProgramName": "David Jones- Default Program"
                },
                {
                    "eventLogId": 178283042,
                    "eventName": "TransactionAdd",
                    "customerId": 64035151,
                    "ledgerCreatedDate": "2024-04-19 07:39:12.0",
                    "customerDetails": {
                        "userId": 0
                    },
                    "entryDetails": [
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "20.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626
                        },
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "100.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Stars"
                        },
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "100.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Stamps"
                        }
                    ],
                    "netPointsOnEvent": "220.000",
                    "transactionDetails": {
                        "transactionId": 130717557,
                        "transactionNumber": "1542280708645",
                        "date": "2024-04-19 07:39:11.0",
                        "amount": 200.0,
                        "grossBillAmount": 200.0,
                        "source": "instore"
                    },
                    "store": "supermarketdemo",
                    "storeCode": "supermarketdemo",
                    "tillCode": "till.marketsuper",
                    "eventDetails": {},
                    "sourceProgramId": 817,
                    "sourceProgramName": "David Jones- Card Program"
                },
                {
                    "eventLogId": 178282122,
                    "eventName": "BulkAllocatePoints",
                    "customerId": 626,
                    "ledgerCreatedDate": "2024-04-19 07:36:17.0",
                    "customerDetails": null,
                    "entryDetails": [
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "2000.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626
                        }
                    ],
                    "netPointsOnEvent": "2000.000",
                    "transactionDetails": {},
                    "store": "default",
                    "storeCode": "default",
                    "tillCode": "default",
                    "eventDetails": {},
                    "sourceProgramId": 626,
                    "sourceProgramName": "David Jones- Default Program"
                },
                {
                    "eventLogId": 178282119,
                    "eventName": "TransactionAdd",
                    "customerId": 64035151,
                    "ledgerCreatedDate": "2024-04-19 07:36:18.0",
                    "customerDetails": {
                        "userId": 0
                    },
                    "entryDetails": [
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "20.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626
                        },
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "100.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Stars"
                        },
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "100.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Stamps"
                        }
                    ],
                    "netPointsOnEvent": "220.000",
                    "transactionDetails": {
                        "transactionId": 130716752,
                        "transactionNumber": "1542280708644",
                        "date": "2024-04-19 07:36:17.0",
                        "amount": 200.0,
                        "grossBillAmount": 200.0,
                        "source": "instore"
                    },
                    "store": "supermarketdemo",
                    "storeCode": "supermarketdemo",
                    "tillCode": "till.marketsuper",
                    "eventDetails": {},
                    "sourceProgramId": 817,
                    "sourceProgramName": "David Jones- Card Program"
                },
                {
                    "eventLogId": 178277003,
                    "eventName": "BulkAllocatePoints",
                    "customerId": 626,
                    "ledgerCreatedDate": "2024-04-19 07:21:31.0",
                    "customerDetails": null,
                    "entryDetails": [
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "2000.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626
                        }
                    ],
                    "netPointsOnEvent": "2000.000",
                    "transactionDetails": {},
                    "store": "default",
                    "storeCode": "default",
                    "tillCode": "default",
                    "eventDetails": {},
                    "sourceProgramId": 626,
                    "sourceProgramName": "David Jones- Default Program"
                },
                {
                    "eventLogId": 178276992,
                    "eventName": "TransactionAdd",
                    "customerId": 64035151,
                    "ledgerCreatedDate": "2024-04-19 07:21:32.0",
                    "customerDetails": {
                        "userId": 0
                    },
                    "entryDetails": [
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "20.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626
                        },
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "100.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Stars"
                        },
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "100.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Stamps"
                        }
                    ],
                    "netPointsOnEvent": "220.000",
                    "transactionDetails": {
                        "transactionId": 130712377,
                        "transactionNumber": "1542280708643",
                        "date": "2024-04-19 07:21:29.0",
                        "amount": 200.0,
                        "grossBillAmount": 200.0,
                        "source": "instore"
                    },
                    "store": "supermarketdemo",
                    "storeCode": "supermarketdemo",
                    "tillCode": "till.marketsuper",
                    "eventDetails": {},
                    "sourceProgramId": 817,
                    "sourceProgramName": "David Jones- Card Program"
                },
                {
                    "eventLogId": 178061276,
                    "eventName": "BulkAllocatePoints",
                    "customerId": 626,
                    "ledgerCreatedDate": "2024-04-18 11:53:07.0",
                    "customerDetails": null,
                    "entryDetails": [
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "2000.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626
                        }
                    ],
                    "netPointsOnEvent": "2000.000",
                    "transactionDetails": {},
                    "store": "default",
                    "storeCode": "default",
                    "tillCode": "default",
                    "eventDetails": {},
                    "sourceProgramId": 626,
                    "sourceProgramName": "David Jones- Default Program"
                },
                {
                    "eventLogId": 178061275,
                    "eventName": "TransactionAdd",
                    "customerId": 64035151,
                    "ledgerCreatedDate": "2024-04-18 11:53:07.0",
                    "customerDetails": {
                        "userId": 0
                    },
                    "entryDetails": [
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "20.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626
                        },
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "100.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Stars"
                        },
                        {
                            "ledgerEntryType": "CREDIT",
                            "points": "100.000",
                            "pointsCategory": "Main",
                            "programName": "David Jones- Default Program",
                            "programId": 626,
                            "alternateCurrencyName": "Stamps"
                        }
                    ],
                    "netPointsOnEvent": "220.000",
                    "transactionDetails": {
                        "transactionId": 130540500,
                        "transactionNumber": "1542280708642",
                        "date": "2024-04-18 11:53:06.0",
                        "amount": 200.0,
                        "grossBillAmount": 200.0,
                        "source": "instore"
                    },
                    "store": "supermarketdemo",
                    "storeCode": "supermarketdemo",
                    "tillCode": "till.marketsuper",
                    "eventDetails": {},
                    "sourceProgramId": 817,
                    "sourceProgramName": "David Jones- Card Program"
                }
            ],
            "warnings": []
        }
        """;

    /// <summary>The second example: one event of opening balances of two alternate currencies.</summary>
    public const string OpeningBalances = """
        {
            "customerDetails": {
                "firstName": "Kamal",
                "lastName": "H",
                "userId": 170940055,
                "externalId": "000000043488",
                "entityType": "CUSTOMER"
            },
            "ledgerDetails": {
                "pageNumber": 0,
                "pageSize": 10,
                "totalEntries": 1,
                "pageCount": 1
            },
            "ledgerEntries": [
                {
                    "eventLogId": 569437706,
                    "eventName": "CustomerUpdate",
                    "customerId": 170940055,
                    "ledgerCreatedDate": "2024-04-25 14:34:52.0",
                    "customerDetails": null,
                    "entryDetails": [
                        {
                            "ledgerEntryType": "OPENING_BALANCE",
                            "points": "0.00",
                            "pointsCategory": "Main",
                            "programName": "Default Program",
                            "programId": 469,
                            "alternateCurrencyName": "Stars"
                        },
                        {
                            "ledgerEntryType": "OPENING_BALANCE",
                            "points": "0.00",
                            "pointsCategory": "Main",
                            "programName": "Default Program",
                            "programId": 469,
                            "alternateCurrencyName": "Coins"
                        }
                    ],
                    "netPointsOnEvent": "0.000",
                    "transactionDetails": {},
                    "store": "demostorebukl Mobile",
                    "storeCode": "demostorebukl",
                    "tillCode": "demostorebukl.1",
                    "eventDetails": {},
                    "sourceProgramId": 805,
                    "sourceProgramName": "Seven Entertainment",
                    "orgId": null
                }
            ],
            "warnings": []
        }
        """;
}
