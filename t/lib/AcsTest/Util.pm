package AcsTest::Util;

# Helpers shared by the test files: fixtures and Event Grid bodies.

use strict;
use AcsTest::Defaults;
use warnings;

use Exporter 'import';
use File::Basename qw(dirname);
use File::Spec;
use POSIX ();
use Time::HiRes ();

our @EXPORT = qw(fixture eg_event ce_event eg_batch chat_for t_dir fresh rfc3339);
our @EXPORT_OK = qw(slurp spew);

my $T = File::Spec->rel2abs(dirname(__FILE__) . '/../..');

our $TOPIC = '/subscriptions/6b3d9a2e-4f1c-4b8e-9d7a-2c5e8f1a0b3c'
    . '/resourceGroups/rg-push-prod/providers/Microsoft.Communication'
    . '/communicationServices/acs-push-demo';

sub t_dir { $T }

# the contents of t/data/events/NAME
sub fixture {
    my ($name) = @_;
    open my $fh, '<', "$T/data/events/$name" or die "fixture $name: $!";
    local $/;
    return scalar <$fh>;
}

# an RFC 3339 UTC time with 7 digits of fraction, as Event Grid writes it:
# now, or $age seconds ago (a fraction allowed; negative: in the future)
sub rfc3339 {
    my ($age) = @_;
    my $t = Time::HiRes::time() - ($age // 0);
    my $s = int $t;
    return POSIX::strftime('%Y-%m-%dT%H:%M:%S', gmtime $s)
        . sprintf('.%07dZ', int(($t - $s) * 1e7));
}

# an event body (a fixture, or what eg_event/ce_event made) whose events
# happened $age seconds ago (default 0: now): every "eventTime" and "time"
# is rewritten.  The fixtures keep their real 2025 times; a test that
# wants a call to ring gives it a fresh one (acs_notify_call_ttl).
sub fresh {
    my ($json, $age) = @_;
    my $now = rfc3339($age);
    $json =~ s/("(?:eventTime|time)"\s*:\s*)"[^"]*"/$1"$now"/g;
    return $json;
}

# one Event Grid schema event as JSON text; %o overrides envelope fields
# (a value of undef drops the field), data => raw JSON of "data"
sub eg_event {
    my (%o) = @_;
    my %f = (
        id              => '"ev-' . ($o{n} // 1) . '"',
        topic           => qq{"$TOPIC"},
        subject         => '"thread/19:t@thread.v2"',
        eventType       => '"Microsoft.Communication.ChatMessageReceived"',
        eventTime       => '"2025-06-12T09:25:59.9436666Z"',
        dataVersion     => '"1.0"',
        metadataVersion => '"1"',
        data            => '{"messageBody":"hi","threadId":"19:t@thread.v2"}',
    );
    delete $o{n};
    for my $k (keys %o) {
        if (defined $o{$k}) { $f{$k} = $o{$k} } else { delete $f{$k} }
    }
    return '{' . join(',', map { qq{"$_":$f{$_}} } sort keys %f) . '}';
}

# one CloudEvents 1.0 event as JSON text
sub ce_event {
    my (%o) = @_;
    my %f = (
        specversion => '"1.0"',
        id          => '"ce-' . ($o{n} // 1) . '"',
        source      => qq{"$TOPIC"},
        type        => '"Microsoft.Communication.ChatMessageReceived"',
        subject     => '"thread/19:t@thread.v2"',
        time        => '"2025-06-12T09:25:59.9436666Z"',
        data        => '{"messageBody":"hi"}',
    );
    delete $o{n};
    for my $k (keys %o) {
        if (defined $o{$k}) { $f{$k} = $o{$k} } else { delete $f{$k} }
    }
    return '{' . join(',', map { qq{"$_":$f{$_}} } sort keys %f) . '}';
}

# a JSON array of N Event Grid events
sub eg_batch {
    my ($n, %o) = @_;
    return '[' . join(',', map { eg_event(%o, n => $_) } 1 .. $n) . ']';
}

# a JSON array of N chat messages to RAW_ID, ids "TAG-1" ... "TAG-N"
sub chat_for {
    my ($raw_id, $n, $tag) = @_;
    return '[' . join(',', map {
        eg_event(id => qq{"$tag-$_"}, data => qq({"messageBody":"hello $_","threadId":"19:t\@thread.v2","senderDisplayName":"A","recipientCommunicationIdentifier":{"rawId":"$raw_id"}}))
    } 1 .. $n) . ']';
}


# a file's bytes, and a file made of these
sub slurp { open(my $f, '<:raw', $_[0]) or die "$_[0]: $!"; local $/; <$f> }
sub spew  { open(my $f, '>:raw', $_[0]) or die "$_[0]: $!"; print {$f} $_[1]; close $f }

1;
