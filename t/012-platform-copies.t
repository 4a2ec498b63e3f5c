# The platform table (ngx_acs_notify_module/ngx_acs_platform.c) is the one
# description of the push platforms; what lives outside the module keeps a
# copy of part of it.  Each copy is held to the table here:
#
#   - the ids are pinned: explicit in ngx_acs_platform.h, from 1, the rows
#     in their order (records on disk carry them: append only);
#   - tools/acs-registry-to-hub reads registry records: its list of ids and
#     its record layout, end to end (the module writes a device of every
#     platform, the tool reads them back);
#   - the Notification Hubs stand-ins know each row's format, payload
#     limit and installation platform.

use strict;
use warnings;

use lib 't/lib';
use AcsTest::Util qw(slurp);
use Test::More;
use AcsTest::Server;
use AcsTest::Reg;
use AcsTest::FakeNH;

my $M = 'ngx_acs_notify_module';


# --- the table, as the C sources have it

my %enum;
my $h = slurp("$M/ngx_acs_platform.h");
my ($body) = $h =~ /typedef enum \{(.*?)\} ngx_acs_platform_e;/s;
ok($body, 'ngx_acs_platform_e found');
while ($body =~ /(NGX_ACS_PLATFORM_\w+)(\s*=\s*(\d+))?/g) {
    ok(defined $3, "$1 has its id written out");
    $enum{$1} = $3;
}

my @rows;
my $c = slurp("$M/ngx_acs_platform.c");
while ($c =~ /\{ \.id = (NGX_ACS_PLATFORM_\w+),(.*?)\}(?:,|\s*\};)/sg) {
    my ($id, $fields) = ($1, $2);
    my %r = (id => $enum{$id});
    while ($fields =~ /\.(\w+) = (?:ngx_string\("([^"]*)"\)|(\w+))/g) {
        $r{$1} = defined $2 ? $2 : $3;
    }
    $r{content_type} = 'application/json;charset=utf-8'
        if $r{content_type} eq 'NGX_ACS_JSON_TYPE';
    push @rows, \%r;
}

is(scalar @rows, scalar keys %enum, 'a row for every id');
is_deeply([map { $_->{id} } @rows], [1 .. @rows], 'the rows in the order of their ids, from 1');
for my $r (@rows) {
    ok($r->{name} && $r->{format} && $r->{installation} && $r->{limit} =~ /^\d+$/,
       "row $r->{id} ($r->{name}) names its platform, format, installation and limit");
}

# --- the migration tool's list of ids

my $tool = slurp('tools/acs-registry-to-hub');
my ($list) = $tool =~ /my \@platforms = \(undef, ([^)]*)\);/;
is_deeply([$list =~ /'([^']+)'/g], [map { $_->{name} } @rows],
          'tools/acs-registry-to-hub has the ids of the table');

# --- the stand-ins know every row

my ($distant) = slurp('t/lib/distant-hub.mjs') =~ /((?:\['\w+', \d+\],?\s*)+)/;
my %distant = $distant =~ /\['(\w+)', (\d+)\]/g;
for my $r (@rows) {
    is($AcsTest::FakeNH::FORMATS{$r->{format}}, $r->{limit},
       "FakeNH: format $r->{format} of $r->{name}, with its limit");
    is($AcsTest::FakeNH::FORMAT_PLATFORM{$r->{format}}, $r->{installation},
       "FakeNH: format $r->{format} is installation platform $r->{installation}");
    is($distant{$r->{format}}, $r->{limit},
       "distant-hub.mjs: format $r->{format} of $r->{name}, with its limit");
}

# --- the tool reads what the module writes, for every platform

my $srv = AcsTest::Server->new('012-platforms');
$srv->write_conf(http => "acs_notify_registry ${\ $srv->root}/registry;",
                 server => <<"SERVER");
        location /acs/ {
            acs_notify_registrations;
            acs_notify_hmac_key $AcsTest::Reg::KEY;
        }
SERVER
$srv->start;

my $P256 = 'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM';
my %handle = (apns => 'ab' x 32, fcmv1 => 'fcm-token_1:abc', url => 'https://push.example/ep/1');
my %want;
for my $r (@rows) {
    my $handle = $r->{check} eq 'ngx_acs_check_apns' ? $handle{apns}
               : $r->{check} eq 'ngx_acs_check_fcm' ? $handle{fcmv1} : $handle{url};
    my %b = (platform => $r->{name}, handle => $handle);
    @b{qw(p256dh auth)} = ($P256, 'tBHItJI5svbpez7KI4CCXg') if $r->{keys};
    my ($st, $resp) = $srv->register('8:acs:copies', "d$r->{id}", %b, ttlSeconds => 86400);
    is($st, 201, "a $r->{name} device registered") or diag $resp;
    $want{"d$r->{id}"} = \%b;
}
$srv->stop;

my $out = `tools/acs-registry-to-hub ${\ $srv->root}/registry http://127.0.0.1:1/acs c2Vjb25kLWtleS1ub3QtcmVhbC0wMTIzNDU2Nzg5 --dry-run 2>&1`;
is($? >> 8, 0, 'the tool reads the registry') or diag $out;
like($out, qr/^${\ scalar @rows} copied, 0 expired skipped, 0 failed$/m, '... every record, none unreadable');
my %got;
while ($out =~ m{^PUT /acs/users/8%3Aacs%3Acopies/devices/(\S+) (\{.*\})$}mg) {
    my ($d, $json) = ($1, $2);
    $got{$d} = { $json =~ /"(\w+)":"([^"]*)"/g };
}
is_deeply(\%got, \%want, '... each with the platform, handle and keys the module stored');

done_testing;
